"""``/api/*``: unloading models, and the profiles (list them, switch the active one at runtime).

``POST /api/models/unload`` stops every running model (``{"msg": "ok"}``
once they are down); ``POST /api/models/unload/<model>`` one model or alias
(``OK``; 404 for an unknown name).

``GET /api/profiles`` answers ``{"active": <name or null>, "profiles": [{"id",
"name", "description", "pins": {name: target or null}, "active"}]}`` in config
order (``id`` as llama-swap's newest names it, ``name`` as before: both are the
profile's name).
``PUT /api/profiles/active`` with ``{"profile": "<name>"}`` activates one;
``{"profile": null}`` or ``""`` selects none (``"name"`` is accepted for
``"profile"``). It answers what ``GET`` would; 404 for a profile that does
not exist, 400 for a body that is not such an object. The active profile is
the server's (``Server.active_profile``): a restart or a config reload selects
none, as in llama-swap. Switching stops nothing: the next request for a
pinned name simply goes to the new target.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from app.config import thaw
from app.errors import BadRequest, NotFound, echoed
from app.runtime.server import Server, current
from scheduler.errors import ModelNotFound

bp = Blueprint("api", __name__)


@bp.post("/api/models/unload")
def unload_all() -> Response:
    current().router.unload()
    return jsonify({"msg": "ok"})


@bp.post("/api/models/unload/<path:name>")
def unload_one(name: str) -> Response:
    server = current()
    model = server.config.resolve(name)
    if model is None:
        raise ModelNotFound(f"model not found: {echoed(name)}")
    server.router.unload([model])
    return Response("OK", mimetype="text/plain")


def profiles_document(server: Server) -> dict[str, Any]:
    active = server.active_profile.name if server.active_profile else None
    return {"active": active, "profiles": [
        {"id": profile.name, "name": profile.name, "description": profile.description, "pins": thaw(profile.pins),
         "active": profile.name == active}
        for profile in sorted(server.config.profiles.values(), key=lambda p: p.name)]}  # by id, as Go


@bp.get("/api/profiles")
def list_profiles() -> Response:
    return jsonify(profiles_document(current()))


@bp.put("/api/profiles/active")
def activate_profile() -> Response:
    server = current()
    body = request.get_json(force=True, silent=True)  # curl -d sends no JSON content type
    if not isinstance(body, dict) or not ({"profile", "name"} & body.keys()):
        raise BadRequest('expected a JSON object {"profile": "<name>"}, or {"profile": null} for none')
    name = body["profile"] if "profile" in body else body["name"]
    if name is not None and not isinstance(name, str):
        raise BadRequest("profile must be a string or null")
    name = name or None
    if name is not None and name not in server.config.profiles:
        known = ", ".join(server.config.profiles) or "none configured"
        raise NotFound(f"profile {echoed(name)} not found (profiles: {known})")
    server.activate_profile(name)
    return jsonify(profiles_document(server))
