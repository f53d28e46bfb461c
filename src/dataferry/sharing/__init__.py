"""Delta Sharing: a consumer's datasets served to partners over the open Delta Sharing
protocol (``/delta-sharing/``, docs/sharing.md).

One share per consumer, one schema per producing team, one table per dataset the consumer
needs; rows and columns exactly what the consumer's sink gets. ``tokens`` keeps the
consumers' bearer tokens (hashed), ``profile`` writes the partner's profile file,
``tables`` maps the model onto shares, ``files`` derives and signs the files served,
``routes`` is the protocol's HTTP side.
"""
