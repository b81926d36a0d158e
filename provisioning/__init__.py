"""Installer tooling: site CA, site manifest to per-gateway bundles, first boot, bus scan.

Exceptions::

    ConfigError (watchpost.config)   the manifest or a bundle's config is wrong: exit 78
    PkiError                         a key or certificate file is unusable; no retry helps
    BundleError                      a bundle is incomplete or does not fit together
"""
