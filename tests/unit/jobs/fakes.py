"""Stand-ins for the PyFlink runtime pieces the operator tests touch."""


class ValueState:
    """One key's ValueState: holds whatever the operator stores (pickled bytes)."""

    def __init__(self):
        self.raw = None

    def value(self):
        return self.raw

    def update(self, raw):
        self.raw = raw

    def clear(self):
        self.raw = None
