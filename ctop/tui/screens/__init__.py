"""Screens: main, node detail, alerts, help and the action dialogs."""
