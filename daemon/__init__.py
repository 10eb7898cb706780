"""gex-alertd: streaming alerts on live dealer gamma exposure."""

__version__ = "0.1.0"
