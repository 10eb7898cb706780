"""The live page: a read-only view of the stored snapshots and alerts (heatmap of net GEX by
strike over the day, levels, profiles, alerts), JSON endpoints and one shared SSE reader.
Served by the ops server and by `gex-alertd web`."""
