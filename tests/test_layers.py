"""Pin the layering and the public surface.

protocol/ is pure (no asyncio, no web framework); lower layers never import higher ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fastapi_realtime

PACKAGE = Path(fastapi_realtime.__file__).parent

LAYER = {
    "protocol": 0,
    "origins": 0, "logredact": 0, "observe": 0,
    "channels": 1, "settings": 1, "ratelimit": 1, "hooks": 1, "_version": 1, "permissions": 1, "limits": 1,
    "exceptions": 1, "signals": 1, "gctuning": 1,
    "session": 2, "brokers": 2, "connlog": 2,
    "hub": 3, "positions": 3,
    "client": 4, "transports": 4,
    "connection": 5, "auth": 5, "idempotency": 1, "serverlimits": 5,
    "app": 6, "api": 6, "streaming": 6, "serve": 7, "__init__": 8, "testing": 9, "server": 9, "__main__": 10,
}  # fmt: skip


def module_key(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts) - 1
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = (node.module or "").split(".")
            if node.level - 1 < depth:  # a sibling inside the same subpackage
                found.add(path.relative_to(PACKAGE).parts[0])
            elif parts[0]:
                found.add(parts[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.update(n.split(".")[1] for n in names if n and n.startswith("fastapi_realtime."))
    return found


def test_every_module_has_a_layer() -> None:
    assert {module_key(p) for p in PACKAGE.rglob("*.py")} <= set(LAYER)


def test_lower_layers_never_import_higher_ones() -> None:
    for path in PACKAGE.rglob("*.py"):
        own = module_key(path)
        for imported in internal_imports(path):
            assert LAYER[imported] <= LAYER[own], f"{path.relative_to(PACKAGE)} imports {imported}"


def test_protocol_is_pure() -> None:
    forbidden = {"asyncio", "starlette", "fastapi", "uvicorn", "socket", "pydantic"}
    for path in (PACKAGE / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"


def test_public_surface() -> None:
    assert set(fastapi_realtime.__all__) == {
        "Broker", "BrokerError", "BrokerEvents", "BrokerUnavailable", "ChannelHistory", "ChannelOptions", "ClientInfo",
        "ConnectContext", "ConnectReply",
        "Connection", "Credentials", "Disconnect", "DisconnectCode", "ErrorCode", "HistoryPublication", "HistoryResult",
        "Hub", "HubSettings", "JWTAuth", "MemoryBroker", "Publication", "PublishContext", "PublishOptions",
        "RPCContext", "RealtimeError", "RefreshContext", "ReplyError", "StreamPosition", "SubscribeContext",
        "SubscriptionGrant", "UnsubscribeCode", "__version__", "install_log_redaction", "run", "uvicorn_config",
        "FeatureNotEnabled", "HubError", "HubNotRunning",
    }  # fmt: skip
    for name in fastapi_realtime.__all__:
        assert getattr(fastapi_realtime, name) is not None
