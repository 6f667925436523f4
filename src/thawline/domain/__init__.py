"""The pure domain: no frameworks, no storage, time injected."""
