"""The web view: a read-only JSON API and a static front end, and ``report`` to freeze both in one file.

Only :mod:`exptrack.ui.server` imports the web stack (Starlette); :mod:`exptrack.ui.views` asks
the query layer the questions the page needs and never imports a web library, so the report
renderer and the tests reuse it without a server.  Nothing here is imported by ``import exptrack``.
"""
