"""The scenarios: each measures one thing on a started peer and returns its figures as a dict."""
