"""crmhub connector ``people``: declared in ``people.toml``, with no code of its own."""
