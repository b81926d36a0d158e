from watchpost.cli import main

raise SystemExit(main())
