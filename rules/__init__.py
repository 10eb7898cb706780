"""The rule engine: pure functions from (rule, state, snapshot) to (state, alerts). No I/O."""
