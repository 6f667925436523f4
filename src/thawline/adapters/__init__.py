"""Adapters: SQL storage, key files, and (later) SMTP, SMS, webhooks."""
