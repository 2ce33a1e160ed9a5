"""Telemetry: windowed numbers of the loop on faust-streaming, the web console, its JSON API."""
