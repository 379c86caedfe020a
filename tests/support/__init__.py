"""Helpers shared by the test folders: case lists derived from the registries, plain
references, tiny models and inputs. Imported as `from support.<module> import ...`
(`tests/` is on pytest's `pythonpath`); test modules never import each other."""
