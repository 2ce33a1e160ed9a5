"""Plumbing every service shares: settings, logging, the bus, dead letters, health.

Small on purpose: anything one service alone needs lives in that service.
"""
