"""The bundled settings and demo workflow, shipped in the package as ``console.config``
and read with importlib.resources."""
