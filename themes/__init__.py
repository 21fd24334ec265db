"""The bundled console themes (one TOML file each), shipped in the package as
``console.themes`` and read with importlib.resources."""
