"""Example workflows, shipped in the package as ``console.config.examples``."""
