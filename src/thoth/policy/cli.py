"""`thoth policy validate|test|explain|push|simulate|packs`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from thoth.policy.errors import PolicyValidationError

PACKS_DIR = Path(__file__).parent / "packs"


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="validate, test, explain, push and simulate policies")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION")

    p = sub.add_parser("validate", help="check a policy file; errors name the line")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("test", help="run policy tests (a tests file, or a policy with a sibling NAME.tests.yaml)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_test)

    p = sub.add_parser("explain", help="why a given call gets its decision")
    p.add_argument("file", help="policy file (or pack:NAME)")
    p.add_argument("--tool", required=True)
    p.add_argument("--agent", default="agent")
    p.add_argument("--user", default="system")
    p.add_argument("--tenant", default="")
    p.add_argument("--args", default="{}", help="tool arguments as JSON")
    p.add_argument("--scope", default=None, help="approved_scope, comma-separated")
    p.add_argument("--mode", default="progressive", choices=["observe", "step_up", "block", "progressive"])
    p.add_argument("--intent", default=None)
    p.add_argument("--risk", type=float, default=None)
    p.add_argument("--env", default="prod")
    p.add_argument("--session", default="", help="earlier calls in this session, comma-separated tool names")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("push", help="upload a policy to the server (PUT /v1/policies); it validates first")
    p.add_argument("file")
    p.add_argument("--tenant", default=None, help="checked against the key's tenant by the server")
    p.add_argument("--comment", default=None)
    _server_args(p)
    p.set_defaults(handler=cmd_push)

    p = sub.add_parser("simulate", help="replay recorded calls against a candidate policy")
    p.add_argument("file")
    p.add_argument("--tenant", default=None)
    p.add_argument("--events", default=None, help="replay a local JSONL event file instead of the server's data")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    _server_args(p)
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("packs", help="list the starter packs, or print one")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=cmd_packs)

    policy.set_defaults(handler=lambda args: (policy.print_help(), 2)[1])


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="server URL (default: THOTH_API_URL)")
    p.add_argument("--api-key", default=None, help="admin API key (default: THOTH_API_KEY)")


# -- helpers ---------------------------------------------------------------------------------------
def _read(path: str) -> tuple[str, Path]:
    file = PACKS_DIR / f"{path[5:]}.yaml" if path.startswith("pack:") else Path(path)
    try:
        return file.read_text(encoding="utf-8"), file
    except FileNotFoundError:
        raise SystemExit(_fail(f"no such file: {file}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(_fail(f"cannot read {file}: {exc}")) from None


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _compile(path: str) -> Any:
    from thoth.policy.engine import compile_policy

    text, file = _read(path)
    try:
        return compile_policy(text, version=f"file:{file.name}")
    except PolicyValidationError as exc:
        for issue in exc.errors:
            where = f"{file}:{issue.line}" if issue.line else str(file)
            print(f"{where}: {issue.path + ': ' if issue.path else ''}{issue.message}", file=sys.stderr)
        raise SystemExit(1) from None


# -- commands --------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from thoth.policy.engine import compile_policy

    text, file = _read(args.file)
    try:
        policy = compile_policy(text)
    except PolicyValidationError as exc:
        if args.json:
            print(json.dumps({"valid": False, "errors": [e.to_dict() for e in exc.errors]}, indent=2))
        else:
            for issue in exc.errors:
                where = f"{file}:{issue.line}" if issue.line else str(file)
                print(f"{where}: {issue.path + ': ' if issue.path else ''}{issue.message}")
            print(f"{len(exc.errors)} error(s); the policy is not valid")
        return 1
    if args.json:
        print(json.dumps({"valid": True, "name": policy.name, "rules": len(policy.rules), "digest": policy.digest}))
    else:
        print(f"{file}: valid ({policy.name}: {len(policy.rules)} rules, {len(policy.catalogue)} catalogued tools,"
              f" {len(policy.agents_exact) + len(policy.agents_glob)} agents,"
              f"{f' {len(policy.tasks)} tasks,' if policy.tasks else ''} digest {policy.digest})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from thoth.policy.testing import load_tests, run_tests

    text, file = _read(args.file)
    try:
        data, marks = load_tests(text)
        policy_path = data.get("policy")
        if not isinstance(policy_path, str):
            return _fail(f"{file}: a tests file names its policy with policy: FILE")
        policy = _compile(policy_path if policy_path.startswith("pack:") else str(file.parent / policy_path))
    except PolicyValidationError:
        # Not a tests file: a policy whose tests sit beside it as NAME.tests.yaml.
        tests_file = file.with_name(file.name.removesuffix(".yaml").removesuffix(".yml") + ".tests.yaml")
        if not tests_file.exists():
            return _fail(f"{file} has no tests: and no {tests_file.name} beside it")
        policy = _compile(str(file))
        data, marks = load_tests(tests_file.read_text(encoding="utf-8"))
        file = tests_file
    results = run_tests(policy, data, marks)
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            mark = "PASS" if r.passed else "FAIL"
            print(f"{mark}  {r.name}" + (f"  ({file}:{r.line})" if r.line and not r.passed else ""))
            for failure in r.failures:
                print(f"      {failure}")
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from thoth.policy.context import CallContext

    policy = _compile(args.file)
    try:
        tool_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        return _fail(f"--args is not JSON: {exc}")
    if not isinstance(tool_args, dict):
        return _fail("--args must be a JSON object")
    history = policy.new_history()
    for name in filter(None, (s.strip() for s in args.session.split(","))):
        history.record(name, {}, None, None)
    call = CallContext(tool_name=args.tool, agent_id=args.agent, user_id=args.user, tenant_id=args.tenant,
                       tool_args=tool_args, enforcement_mode=args.mode, environment=args.env,
                       session_intent=args.intent, risk_score=args.risk,
                       approved_scope=[s.strip() for s in args.scope.split(",") if s.strip()] if args.scope else None)
    decision = policy.evaluate(call, history, explain=True)
    if args.json:
        body = decision.to_wire()
        body["trace"] = decision.trace
        print(json.dumps(body, indent=2, default=str))
        return 0
    print(f"decision:  {decision.decision.value}" + (f"  (would be {decision.would_decision.value})"
                                                   if decision.would_decision is not decision.decision else ""))
    print(f"reason:    {decision.reason}  [{decision.reason_code}]")
    print(f"matched:   {', '.join(decision.matched_rule_ids) or '-'}")
    if decision.policy_references:
        print(f"refs:      {', '.join(decision.policy_references)}")
    if decision.modified_args is not None:
        print(f"modified:  {json.dumps(decision.modified_args, default=str)}")
    print("steps:")
    for step in decision.trace:
        print(f"  - {step}")
    return 0


def _server(args: argparse.Namespace) -> tuple[str, str]:
    url = (args.url or os.environ.get("THOTH_API_URL") or "").rstrip("/")
    key = args.api_key or os.environ.get("THOTH_API_KEY") or ""
    if not url or url == "local":
        raise SystemExit(_fail("set THOTH_API_URL (or --url) to the server, e.g. http://127.0.0.1:8080"))
    if not key:
        raise SystemExit(_fail("set THOTH_API_KEY (or --api-key) to an admin key of the tenant"))
    return url, key


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "reason", "detail"):
            if body.get(key):
                return str(body[key])
    return str(body)[:500]


def cmd_push(args: argparse.Namespace) -> int:
    import httpx

    policy = _compile(args.file)  # never upload what does not validate
    text, _ = _read(args.file)
    url, key = _server(args)
    body: dict[str, Any] = {"document": text, "comment": args.comment}
    if args.tenant:
        body["tenant_id"] = args.tenant
    try:
        response = httpx.put(f"{url}/v1/policies", json=body, headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {url}: {exc}")
    if response.status_code >= 400:
        return _fail(f"the server refused the policy ({response.status_code}): {_message(response)}", 1)
    answer = response.json()
    print(f"pushed {policy.name} ({len(policy.rules)} rules): tenant {answer.get('tenant_id')}, "
          f"version {answer.get('version')}, active")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    policy = _compile(args.file)
    if args.events:
        from thoth.policy.simulate import calls_from_events, simulate

        try:
            lines = Path(args.events).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            return _fail(f"cannot read {args.events}: {exc}")
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        summary = simulate(policy, calls_from_events(events)[-args.limit:])
    else:
        import httpx

        text, _ = _read(args.file)
        url, key = _server(args)
        body: dict[str, Any] = {"document": text, "limit": args.limit}
        if args.tenant:
            body["tenant_id"] = args.tenant
        try:
            response = httpx.post(f"{url}/v1/policies/simulate", json=body,
                                  headers={"Authorization": f"Bearer {key}"}, timeout=120)
        except httpx.HTTPError as exc:
            return _fail(f"cannot reach {url}: {exc}")
        if response.status_code in (404, 405):
            return _fail(f"{url} has no POST /v1/policies/simulate; replay a local file with --events FILE")
        if response.status_code >= 400:
            return _fail(f"simulation refused ({response.status_code}): {_message(response)}", 1)
        summary = response.json()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"evaluated {summary.get('evaluated', 0)} calls: {summary.get('decisions', {})}")
    print(f"{summary.get('changed', 0)} decision(s) would change")
    if summary.get("summary"):  # the server's sentence: "this draft would have blocked 12 more calls ..."
        print(f"{summary['summary']}:")
    for item in summary.get("items", [])[:50]:
        print(f"  {item.get('session_id')}  {item.get('tool_name')}: {item.get('current')} -> {item.get('candidate')}"
              f"  ({', '.join(item.get('matched_rule_ids') or []) or item.get('reason')})")
    return 0


def cmd_packs(args: argparse.Namespace) -> int:
    packs = sorted(p.stem for p in PACKS_DIR.glob("*.yaml") if not p.name.endswith(".tests.yaml"))
    if not args.name:
        for name in packs:
            print(f"pack:{name}")
        return 0
    if args.name not in packs:
        return _fail(f"no pack {args.name!r}; packs: {', '.join(packs)}")
    print((PACKS_DIR / f"{args.name}.yaml").read_text(encoding="utf-8"), end="")
    return 0
