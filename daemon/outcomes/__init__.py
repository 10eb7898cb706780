"""Outcome statistics: what spot did after each alert, per rule and horizon.

Pure parts (`horizons`, `measure`, `stats`, `regime`, `report`) compute from arrays; the edges
(`paths` reads spot paths from the snapshot streams, `alerts` finds the alerts, `live` is the
daemon duty, `command` the CLI) do the I/O. Outcomes describe the stored history they were
computed from: on the embedded simulator they describe the simulator, not markets.
"""
