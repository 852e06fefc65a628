"""Hostile and concurrent use of the Python face: every invalid input is a MeshPolicyError, messages stay
short, and one Mesh serves many threads."""

import gc
import pathlib
import threading

import pytest

from mesh_policy import InvalidConfigError, InvalidManifestError, InvalidRequestError, Mesh, MeshPolicyError

DENY_ALL_BUT_GET = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  rules:
  - to: [{operation: {methods: ["GET"]}}]
"""


def request(method="GET", **http):
    return {"destination": {"namespace": "shop", "service": "api"},
            "http": {"method": method, "path": "/", **http}}


def deep_list(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("bad", [
    {"set": {1, 2}},
    {"bytes": b"GET"},
    {"deep": deep_list(100_000)},
    {"float": float("nan")},
    {"object": object()},
    {1: "int key"},
    {"huge": 10 ** 40},
])
def test_invalid_request_values_raise_invalid_request_error(bad):
    mesh = Mesh()
    req = request()
    req["http"]["headers"] = bad
    with pytest.raises(InvalidRequestError) as err:
        mesh.check(req)
    assert "request[\"http\"][\"headers\"]" in str(err.value)


@pytest.mark.parametrize("bad", [None, [], "text", {1, 2}])
def test_a_request_must_be_a_dict(bad):
    with pytest.raises(InvalidRequestError, match="expected a dict"):
        Mesh().check(bad)


@pytest.mark.parametrize("now", ["soon", True, float("inf"), -1])
def test_invalid_now_is_an_invalid_request(now):
    with pytest.raises(InvalidRequestError, match="now"):
        Mesh().check(request(), now=now)


@pytest.mark.parametrize("kwargs, field", [
    ({"trust_domain": ""}, "trust_domain"),
    ({"trust_domain_aliases": ["*"]}, r"trust_domain_aliases\[0\]"),
    ({"trust_domain_aliases": "td-old"}, "expected a list of str"),
    ({"trust_domain": 7}, "trust_domain: expected str"),
    ({"root_namespace": b"\xff"}, "root_namespace: not valid UTF-8"),
    ({"max_manifest_bytes": "big"}, "max_manifest_bytes"),
    ({"path_normalization": "SOMETIMES"}, "path_normalization"),
])
def test_invalid_settings_raise_invalid_config_error(kwargs, field):
    with pytest.raises(InvalidConfigError, match=field) as err:
        Mesh(**kwargs)
    assert isinstance(err.value, MeshPolicyError)


@pytest.mark.parametrize("text", [12, None, ["a"], b"\xff\xfe"])
def test_invalid_manifest_arguments_raise_invalid_manifest_error(text):
    with pytest.raises(InvalidManifestError):
        Mesh().apply_yaml(text)


def test_manifest_as_utf8_bytes_with_a_byte_order_mark(tmp_path: pathlib.Path):
    mesh = Mesh()
    assert mesh.apply_yaml(b"\xef\xbb\xbf" + DENY_ALL_BUT_GET.encode())["applied"] == ["AuthorizationPolicy shop/get-only"]
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + DENY_ALL_BUT_GET.encode())
    assert mesh.apply_file(path)["applied"] == ["AuthorizationPolicy shop/get-only"]


def test_invalid_utf8_file_is_an_invalid_manifest(tmp_path: pathlib.Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DENY_ALL_BUT_GET.encode() + b"# caf\xe9\n")
    with pytest.raises(InvalidManifestError, match="not valid UTF-8"):
        Mesh().apply_file(path)


def test_error_messages_are_bounded():
    huge = "x" * (10 << 20)
    with pytest.raises(InvalidRequestError) as err:
        Mesh().check({"destination": {"namespace": "shop", "port": huge}})
    assert len(str(err.value)) < 10_000
    many = "".join(
        f"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}}}\n"
        "spec: {rules: [{when: []}]}\n" for i in range(2_000))
    with pytest.raises(InvalidManifestError) as err:
        Mesh().apply_yaml(many)
    assert str(err.value).endswith("... and 1980 more errors")
    assert len(str(err.value)) < 10_000


def test_checks_and_applies_from_many_threads():
    mesh = Mesh()
    mesh.apply_yaml(DENY_ALL_BUT_GET)
    failures = []
    stop = threading.Event()

    def checker():
        try:
            while not stop.is_set():
                assert mesh.check(request("GET")).allowed
                assert not mesh.check(request("POST")).allowed
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=checker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(200):
            mesh.apply_yaml(DENY_ALL_BUT_GET.replace("get-only", f"get-only-{i % 3}"))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == []
    assert len(mesh) == 4


def test_reentrant_use_from_a_callback():
    # Garbage-collector callbacks run in the middle of whatever allocates: with a threshold of 1 they run
    # inside the calls below, and each makes a check of its own on the same mesh.
    mesh = Mesh()
    mesh.apply_yaml(DENY_ALL_BUT_GET)
    results = []

    def callback(phase, _info):
        if phase == "start" and len(results) < 100:
            results.append(mesh.check(request("GET")).allowed)

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1, 1, 1)
    try:
        for _ in range(100):
            assert not mesh.check(request("POST")).allowed
            mesh.apply_yaml(DENY_ALL_BUT_GET)
            mesh.analyze()
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)
    assert results and all(results)


def test_headers_in_any_case_are_joined_in_dict_order():
    mesh = Mesh()
    mesh.apply_yaml("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: DENY
  rules:
  - when: [{key: "request.headers[x-evil]", values: ["1", "1,*"]}]
""")
    assert not mesh.check(request(headers={"X-EVIL": "1"})).allowed
    assert not mesh.check(request(headers={"X-Evil": "1", "x-evil": "0"})).allowed
    decision = mesh.check(request(headers={"X-Evil": "0", "x-evil": "1"}))
    assert decision.allowed, decision.reason


def test_ipv4_mapped_ipv6_is_the_ipv4_address():
    mesh = Mesh()
    mesh.apply_yaml("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-net, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]}]
""")
    for ip in ("10.0.0.1", "::ffff:10.0.0.1", "::FFFF:10.0.0.1"):
        d = mesh.check({"destination": {"namespace": "shop", "port": 80}, "source": {"ip": ip}})
        assert not d.allowed and d.policy == "shop/deny-net", ip
    assert mesh.check({"destination": {"namespace": "shop", "port": 80}, "source": {"ip": "::ffff:11.0.0.1"}}).allowed
