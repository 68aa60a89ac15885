"""The daemon's TOML configuration, parsed once into a frozen :class:`NodeConfig`.

Rule 1: the file is read with ``tomllib`` and checked against one schema table
(:data:`_SCHEMA`); unknown keys, wrong types and bad values raise :class:`ConfigError` naming the
file, the line and the key, so an operator can fix it without reading code.
Rule 2: relative paths are resolved against the directory of the config file; the control
socket defaults to ``$RUNTIME_DIRECTORY/crowdmesh.sock`` under systemd, else
``<data_dir>/control.sock``; ``data_dir`` defaults to ``$STATE_DIRECTORY`` under systemd.
Rule 3: bootstrap addresses are checked with the network's own parser
(``crowdmesh.p2p.host.parse_peer_addr``), so an address the daemon could not dial fails at load
with ``file:line``, never later on a dial or a SIGHUP.
Rule 4: the result is immutable; SIGHUP builds a new ``NodeConfig`` and the daemon applies only
the reloadable fields (:data:`RELOADABLE`).
Rule 5: floats are read as exact decimals, so ``[spatial] location`` in degrees becomes int
micro-degrees by one exact decimal rounding (half away from zero), never through a binary float;
the ground-truth CSV is read and checked at load, its errors naming the CSV's ``file:line``.

Example::

    data_dir = "/var/lib/crowdmesh"
    genesis = "genesis.json"          # default <data_dir>/genesis.json
    roles = ["miner"]
    log_level = "info"

    [p2p]
    listen = "/ip4/0.0.0.0/tcp/7350"
    bootstrap = ["/ip4/10.0.0.2/tcp/7350/p2p/12D3KooW..."]

    [mining]
    mode = "on-demand"                # off | continuous | on-demand
    account = "<64 hex chars>"        # receives block rewards (default: the [account] key's
                                      # account, else the node's own key)

    [account]                         # the key the daemon signs its roles' contract calls with
    key = "node"                      # <data_dir>/keys/node.key (crowdmesh keys new node)
    passphrase_env = "CROWDMESH_PASSPHRASE"   # only if the key file is encrypted

    [control]
    socket = "/run/crowdmesh/crowdmesh.sock"

    [spatial]                         # spatial crowdsourcing (roles spatial-worker/-requester)
    location = [35.2271, -80.8431]    # degrees; a worker joins the H3 cells around it
    vote_policy = "operator"          # operator | honest | always-confirm | always-reject | oracle
    error_rate = 0                    # per mille of votes flipped (simulated mistakes), 0..1000
    ground_truth = "truth.csv"        # rows "type,lat,lon" (degrees); required for oracle

    [crowdsfl]                        # CrowdSFL (roles requester, worker, csp)
    dataset = "rows.csv"              # worker: numeric features + a label column, "?" missing
                                      # (default: the built-in data minus its held-out split)
    label = "class"                   # the CSV's label column (default: the last column)
    holdout = "held.csv"              # requester: held-out rows (default: the built-in split)
    shard = "1/3"                     # this worker keeps the i-th of n equal shards
    auto_join = true                  # worker: join every new task that fits its data
    behaviour = "honest"              # honest | free-rider | label-flip | random-weights
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from crowdmesh.daemon.api import MiningMode
from crowdmesh.errors import UsageError

__all__ = [
    "CHAIN_DB",
    "DEFAULT_LISTEN",
    "LOG_LEVELS",
    "MINING_MODES",
    "RELOADABLE",
    "ROLES",
    "SFL_BEHAVIOURS",
    "VOTE_POLICIES",
    "ConfigError",
    "GroundTruth",
    "NodeConfig",
    "load_config",
    "load_ground_truth",
    "parse_config",
    "render_config",
]

DEFAULT_PORT: Final = 7350
CHAIN_DB: Final = "chain.sqlite"
DEFAULT_LISTEN: Final = f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"
ROLES: Final = frozenset({"miner", "requester", "csp", "worker", "spatial-requester",
                          "spatial-worker"})
MINING_MODES: Final[tuple[MiningMode, ...]] = ("off", "continuous", "on-demand")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
VOTE_POLICIES: Final = ("operator", "honest", "always-confirm", "always-reject", "oracle")
MAX_GROUND_TRUTH_ROWS: Final = 4096  # as many truths as ``SpatialConfigured`` takes
_E6: Final = Decimal(1_000_000)
_REPORT_TYPE = re.compile(r"^[a-z0-9-]{1,32}$")  # the genesis alphabet of report types
RELOADABLE: Final = frozenset({"log_level", "mining_mode", "bootstrap"})
# sockaddr_un.sun_path is 108 bytes on Linux including the NUL terminator.
MAX_SOCKET_PATH: Final = 107
_MULTIADDR = re.compile(
    r"^/(ip4|ip6|dns|dns4|dns6)/[^/]+/tcp/\d{1,5}(/p2p/[1-9A-HJ-NP-Za-km-z]+)?$"
)
_ACCOUNT = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_-]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_-])?$")
_SHARD = re.compile(r"^([1-9][0-9]{0,2})/([1-9][0-9]{0,2})$")
SFL_BEHAVIOURS: Final = ("honest", "free-rider", "label-flip", "random-weights")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


GroundTruth = tuple[tuple[str, int, int], ...]
"""Ground-truth events: ``(type, lat_e6, lon_e6)`` per CSV row, in file order."""


class ConfigError(UsageError):
    """A config file that cannot be used; ``str()`` reads ``file:line: key: problem``."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__("bad-config", f"{where}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything the daemon needs to start; built by :func:`load_config`."""

    data_dir: Path
    genesis_path: Path
    control_socket: Path
    listen: str = DEFAULT_LISTEN
    bootstrap: tuple[str, ...] = ()
    roles: frozenset[str] = frozenset()
    mining_mode: MiningMode = "off"
    miner_account: str | None = None
    log_level: str = "info"
    max_peers: int = 50
    control_max_clients: int = 64
    control_request_timeout_s: float = 30.0
    account_key: str | None = None
    account_passphrase_env: str | None = None
    location: tuple[int, int] | None = None
    """``[spatial] location`` in int micro-degrees ``(lat_e6, lon_e6)``."""
    vote_policy: str = "operator"
    error_permille: int = 0
    ground_truth_path: Path | None = None
    ground_truth: GroundTruth = ()
    """The rows of ``ground_truth_path``, read at load."""
    sfl_dataset: Path | None = None
    sfl_label: str | None = None
    sfl_holdout: Path | None = None
    sfl_shard: tuple[int, int] | None = None
    """``[crowdsfl] shard = "i/n"`` as ``(i, n)``, 1 ≤ i ≤ n."""
    sfl_auto_join: bool = False
    sfl_behaviour: str = "honest"
    source: str = field(default="<config>", compare=False)

    @property
    def chain_db(self) -> Path:
        """The chain's SQLite database: ``<data_dir>/chain.sqlite`` (check-db, reindex)."""
        return self.data_dir / CHAIN_DB

    @property
    def is_miner(self) -> bool:
        """True if this node may mine blocks."""
        return "miner" in self.roles


# ---- schema -------------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns a problem description, or None if fine


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _is_multiaddr(v: Any) -> str | None:
    if not isinstance(v, str) or not _MULTIADDR.match(v):
        return "must be a TCP multiaddr like /ip4/127.0.0.1/tcp/7350[/p2p/<peer id>]"
    port = int(v.split("/tcp/")[1].split("/")[0])
    return None if port <= 65535 else "port must be 0..65535"


def _is_bootstrap(v: Any) -> str | None:
    # why the network's own parser: an address that passes the regex but not libp2p (e.g. a
    # peer id that is no multihash) would otherwise fail only when dialled, or on SIGHUP
    from crowdmesh.p2p.host import parse_peer_addr  # lazy: libp2p is slow to import

    if not isinstance(v, list):
        return "must be a list of multiaddrs"
    for item in v:
        if _is_multiaddr(item) or "/p2p/" not in item:
            return f"{item!r} must be a TCP multiaddr ending in /p2p/<peer id>"
        try:
            parse_peer_addr(item)
        except UsageError as exc:
            return f"{item!r} is not a valid peer address ({exc.code}: {exc.detail})"
    return None


def _is_roles(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(r, str) for r in v):
        return "must be a list of strings"
    bad = sorted(set(v) - ROLES)
    return f"unknown role(s) {bad}; known: {sorted(ROLES)}" if bad else None


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"

    return check


def _int_range(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"must be an integer in {lo}..{hi}"

    return check


def _positive_number(v: Any) -> str | None:
    # why is_finite first: comparing Decimal NaN (TOML ``nan``) raises InvalidOperation
    finite = isinstance(v, int) or (isinstance(v, Decimal) and v.is_finite())
    ok = finite and not isinstance(v, bool) and 0 < v <= 3600
    return None if ok else "must be a number of seconds in (0, 3600]"


def _is_key_name(v: Any) -> str | None:
    ok = isinstance(v, str) and _KEY_NAME.match(v)
    return None if ok else "must be a key name (letters, digits, _ - .) in <data_dir>/keys"


def _is_env_name(v: Any) -> str | None:
    ok = isinstance(v, str) and _ENV_NAME.match(v)
    return None if ok else "must be an environment variable name"


def _is_account(v: Any) -> str | None:
    ok = isinstance(v, str) and _ACCOUNT.match(v)
    return None if ok else "must be 64 lowercase hex characters (an account id)"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _is_shard(v: Any) -> str | None:
    m = _SHARD.match(v) if isinstance(v, str) else None
    ok = m is not None and int(m[1]) <= int(m[2])
    return None if ok else 'must be "i/n" with 1 <= i <= n <= 999'


def degrees_e6(v: Any) -> int:
    """Degrees (an int or an exact ``Decimal``) as int micro-degrees, rounded half away from
    zero once.

    Raises:
        ValueError: not a finite number.
    """
    if isinstance(v, bool) or not isinstance(v, int | Decimal):
        raise ValueError(f"{v!r} is not a number of degrees")
    d = Decimal(v)
    if not d.is_finite() or abs(d) > 360:  # why bound: quantize fails on huge exponents
        raise ValueError(f"{v} is not a finite number of degrees")
    return int((d * _E6).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _point_problem(lat_e6: int, lon_e6: int) -> str | None:
    from crowdmesh.chain.contracts.spatial.geo import check_point  # lazy: h3 is slow to import
    from crowdmesh.errors import ValidationError

    try:
        check_point(lat_e6, lon_e6)
    except ValidationError:
        return "latitude must be in -90..90 and longitude in -180..180 degrees"
    return None


def _is_location(v: Any) -> str | None:
    if not isinstance(v, list) or len(v) != 2:
        return "must be [latitude, longitude] in degrees"
    try:
        lat, lon = degrees_e6(v[0]), degrees_e6(v[1])
    except ValueError as exc:
        return str(exc)
    return _point_problem(lat, lon)


# (table, key) -> (NodeConfig field, check). Table "" is the top level.
_SCHEMA: Final[dict[tuple[str, str], tuple[str, Check]]] = {
    ("", "data_dir"): ("data_dir", _is_str),
    ("", "genesis"): ("genesis_path", _is_str),
    ("", "roles"): ("roles", _is_roles),
    ("", "log_level"): ("log_level", _one_of(LOG_LEVELS)),
    ("p2p", "listen"): ("listen", _is_multiaddr),
    ("p2p", "bootstrap"): ("bootstrap", _is_bootstrap),
    ("p2p", "max_peers"): ("max_peers", _int_range(1, 1000)),
    ("mining", "mode"): ("mining_mode", _one_of(MINING_MODES)),
    ("mining", "account"): ("miner_account", _is_account),
    ("account", "key"): ("account_key", _is_key_name),
    ("account", "passphrase_env"): ("account_passphrase_env", _is_env_name),
    ("control", "socket"): ("control_socket", _is_str),
    ("control", "max_clients"): ("control_max_clients", _int_range(1, 10_000)),
    ("control", "request_timeout"): ("control_request_timeout_s", _positive_number),
    ("spatial", "location"): ("location", _is_location),
    ("spatial", "vote_policy"): ("vote_policy", _one_of(VOTE_POLICIES)),
    ("spatial", "error_rate"): ("error_permille", _int_range(0, 1000)),
    ("spatial", "ground_truth"): ("ground_truth_path", _is_str),
    ("crowdsfl", "dataset"): ("sfl_dataset", _is_str),
    ("crowdsfl", "label"): ("sfl_label", _is_str),
    ("crowdsfl", "holdout"): ("sfl_holdout", _is_str),
    ("crowdsfl", "shard"): ("sfl_shard", _is_shard),
    ("crowdsfl", "auto_join"): ("sfl_auto_join", _is_bool),
    ("crowdsfl", "behaviour"): ("sfl_behaviour", _one_of(SFL_BEHAVIOURS)),
}
_TABLES: Final = frozenset(t for t, _ in _SCHEMA if t)


def _line_of(text: str, table: str, key: str) -> int | None:
    """Line defining ``key`` in ``[table]``, or None: tomllib reports no positions."""
    current = ""
    key_re = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            current = header.group(1).strip()
            if not key and current == table:
                return number
        elif current == table and key and key_re.match(line):
            return number
    return None


def _flatten(doc: dict[str, Any], text: str, source: str) -> dict[str, Any]:
    """Check every key against the schema; return ``{field: raw value}``."""
    found: dict[str, Any] = {}
    for top, value in doc.items():
        if top in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(source, _line_of(text, "", top), f"{top}: must be a [table]")
            items = [(top, k, v) for k, v in value.items()]
        else:
            items = [("", top, value)]
        for table, key, v in items:
            _check_key(table, key, v, text, source, found)
    return found


def _check_key(
    table: str, key: str, v: Any, text: str, source: str, found: dict[str, Any]
) -> None:
    name = f"{table}.{key}" if table else key
    entry = _SCHEMA.get((table, key))
    if entry is None:
        known = sorted(f"{t}.{k}" if t else k for t, k in _SCHEMA)
        line = _line_of(text, table, key)
        raise ConfigError(source, line, f"unknown key {name!r}; known: {known}")
    field_name, check = entry
    problem = check(v)
    if problem:
        raise ConfigError(source, _line_of(text, table, key), f"{name}: {problem}")
    found[field_name] = v


class _PathProblem(ValueError):
    """A configured path the OS cannot take (unknown ``~user``, a NUL byte)."""


def _resolve(base: Path, raw: str) -> Path:
    try:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    except (RuntimeError, ValueError) as exc:
        raise _PathProblem(f"path {raw!r}: {exc}") from None


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Parse TOML ``text`` into a :class:`NodeConfig`.

    Args:
        text: the TOML document.
        source: name used in error messages (the file path).
        base_dir: directory relative paths are resolved against (default: cwd).
        env: environment for the systemd defaults (default: ``os.environ``).
    Raises:
        ConfigError: with ``file:line`` for syntax errors, unknown keys and bad values.
    """
    env = os.environ if env is None else env
    base = (base_dir or Path.cwd()).resolve()
    try:
        doc = tomllib.loads(text, parse_float=Decimal)  # Rule 5: exact decimals
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(source, int(m.group(1)) if m else None, f"TOML syntax: {exc}") from None
    raw = _flatten(doc, text, source)
    try:
        return _build(raw, base, env, source, text)
    except _PathProblem as exc:
        raise ConfigError(source, None, str(exc)) from None


def _build(
    raw: dict[str, Any], base: Path, env: Mapping[str, str], source: str, text: str
) -> NodeConfig:
    data_raw = raw.pop("data_dir", None) or env.get("STATE_DIRECTORY", "").split(":")[0]
    if not data_raw:
        raise ConfigError(source, None, "data_dir is required (or set StateDirectory= in systemd)")
    data_dir = _resolve(base, data_raw)
    genesis = _resolve(base, raw.pop("genesis_path", str(data_dir / "genesis.json")))
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    default_sock = Path(runtime) / "crowdmesh.sock" if runtime else data_dir / "control.sock"
    sock = _resolve(base, raw.pop("control_socket")) if "control_socket" in raw else default_sock
    if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
        line = _line_of(text, "control", "socket")
        raise ConfigError(source, line, f"control socket path over {MAX_SOCKET_PATH} bytes: {sock}")
    raw["roles"] = frozenset(raw.get("roles", ()))
    raw["bootstrap"] = tuple(raw.get("bootstrap", ()))
    raw["control_request_timeout_s"] = float(raw.get("control_request_timeout_s", 30.0))
    if raw.get("mining_mode", "off") != "off" and "miner" not in raw["roles"]:
        line = _line_of(text, "mining", "mode")
        raise ConfigError(source, line, "mining.mode is not 'off' but roles lacks 'miner'")
    _build_spatial(raw, base, source, text)
    for name in ("sfl_dataset", "sfl_holdout"):
        if name in raw:
            raw[name] = _resolve(base, raw[name])
    if "sfl_shard" in raw:
        i, n = raw["sfl_shard"].split("/")
        raw["sfl_shard"] = (int(i), int(n))
    return NodeConfig(
        data_dir=data_dir, genesis_path=genesis, control_socket=sock, source=source,
        **raw,
    )


def _build_spatial(raw: dict[str, Any], base: Path, source: str, text: str) -> None:
    """Convert the ``[spatial]`` values in ``raw``: degrees to micro-degrees, the ground-truth
    path resolved and its file read (required for the ``oracle`` vote policy)."""
    if "location" in raw:
        raw["location"] = (degrees_e6(raw["location"][0]), degrees_e6(raw["location"][1]))
    if "ground_truth_path" in raw:
        path = _resolve(base, raw["ground_truth_path"])
        raw["ground_truth_path"] = path
        try:
            csv_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            line = _line_of(text, "spatial", "ground_truth")
            raise ConfigError(source, line, f"spatial.ground_truth: cannot read: {exc}") from None
        raw["ground_truth"] = load_ground_truth(csv_text, str(path))
    elif raw.get("vote_policy") == "oracle":
        line = _line_of(text, "spatial", "vote_policy")
        raise ConfigError(source, line, "spatial.vote_policy 'oracle' needs spatial.ground_truth")


def load_ground_truth(text: str, source: str) -> GroundTruth:
    """Parse ground-truth CSV: one ``type,lat,lon`` row per event (degrees), an optional
    ``type,lat,lon`` header line, blank lines and ``#`` comment lines ignored.

    Raises:
        ConfigError: naming ``source:line`` for a bad row.
    """
    rows: list[tuple[str, int, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or (
                not rows and stripped.replace(" ", "") == "type,lat,lon"):
            continue
        if len(rows) == MAX_GROUND_TRUTH_ROWS:
            raise ConfigError(source, number, f"more than {MAX_GROUND_TRUTH_ROWS} rows")
        rows.append(_truth_row(stripped, source, number))
    return tuple(rows)


def _truth_row(line: str, source: str, number: int) -> tuple[str, int, int]:
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != 3:
        raise ConfigError(source, number, f"want 3 columns type,lat,lon, got {len(cells)}")
    type_, lat_text, lon_text = cells
    if not _REPORT_TYPE.match(type_):
        raise ConfigError(source, number, f"type {type_!r}: 1..32 characters of [a-z0-9-]")
    try:
        lat, lon = degrees_e6(Decimal(lat_text)), degrees_e6(Decimal(lon_text))
    except (InvalidOperation, ValueError):
        raise ConfigError(source, number, f"lat/lon {lat_text!r}, {lon_text!r}: want decimal "
                                          "degrees") from None
    problem = _point_problem(lat, lon)
    if problem:
        raise ConfigError(source, number, problem)
    return type_, lat, lon


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and parse the config file at ``path``.

    Raises:
        ConfigError: if the file cannot be read or is invalid (with file:line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), None, f"cannot read config: {exc}") from None
    return parse_config(text, source=str(p), base_dir=p.parent, env=env)


def _degrees(e6: int) -> Decimal:
    """Micro-degrees as exact decimal degrees (what :func:`degrees_e6` reads back)."""
    return Decimal(e6) / _E6


def _toml_value(v: Any) -> str:
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, frozenset):
        v = sorted(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(cfg: NodeConfig) -> str:
    """Write ``cfg`` back as TOML that :func:`parse_config` reads to an equal config."""
    values: dict[str, Any] = {
        "data_dir": str(cfg.data_dir), "genesis_path": str(cfg.genesis_path),
        "control_socket": str(cfg.control_socket), "listen": cfg.listen,
        "bootstrap": list(cfg.bootstrap), "roles": cfg.roles, "mining_mode": cfg.mining_mode,
        "miner_account": cfg.miner_account, "log_level": cfg.log_level,
        "max_peers": cfg.max_peers, "control_max_clients": cfg.control_max_clients,
        "control_request_timeout_s": cfg.control_request_timeout_s,
        "account_key": cfg.account_key, "account_passphrase_env": cfg.account_passphrase_env,
        "location": None if cfg.location is None else [_degrees(x) for x in cfg.location],
        "vote_policy": cfg.vote_policy, "error_permille": cfg.error_permille,
        "ground_truth_path": None if cfg.ground_truth_path is None else str(cfg.ground_truth_path),
        "sfl_dataset": None if cfg.sfl_dataset is None else str(cfg.sfl_dataset),
        "sfl_label": cfg.sfl_label,
        "sfl_holdout": None if cfg.sfl_holdout is None else str(cfg.sfl_holdout),
        "sfl_shard": None if cfg.sfl_shard is None else "{}/{}".format(*cfg.sfl_shard),
        "sfl_auto_join": cfg.sfl_auto_join or None,  # defaults left out
        "sfl_behaviour": None if cfg.sfl_behaviour == "honest" else cfg.sfl_behaviour,
    }
    tables: dict[str, list[str]] = {}
    for (table, key), (name, _) in _SCHEMA.items():
        if values[name] is not None:
            tables.setdefault(table, []).append(f"{key} = {_toml_value(values[name])}")
    out = tables.pop("", [])
    for table, lines in tables.items():
        out += ["", f"[{table}]", *lines]
    return "\n".join(out) + "\n"
