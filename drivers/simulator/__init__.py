"""The simulated hazard site: Modbus TCP and RTU servers whose values move like a real site's.

Run as its own process (``watchpost simulate SITE.toml``); the gateway daemon never imports
it. ``site`` reads the site file, ``engine`` computes the values, ``server`` serves them.
"""
