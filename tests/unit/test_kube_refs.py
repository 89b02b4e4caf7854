"""Image reference normalisation, registry matching and protection semantics (pure, no network)."""

import json
from pathlib import Path

import pytest

from regkeeper.errors import RefusedError
from regkeeper.kube import (
    ContextError,
    ImageRef,
    InUseScan,
    InUseSource,
    KubeReadError,
    KubeSnapshotError,
    MalformedObjectError,
    extract_images,
    load_snapshot,
    normalize_host,
    parse_image_ref,
    registry_hosts,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
DA = "sha256:" + "a" * 64

# --------------------------------------------------------------------------------------------
# parse_image_ref: valid references
# --------------------------------------------------------------------------------------------
VALID = [
    # input                                               host                repository                   tag        digest
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("library/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("index.docker.io/library/alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("index.docker.io/alpine", "docker.io", "library/alpine", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None),
    ("team-a/web:1.4.2", "docker.io", "team-a/web", "1.4.2", None),
    ("a/b/c/d:e", "docker.io", "a/b/c/d", "e", None),
    (f"nginx@{D1}", "docker.io", "library/nginx", None, D1),
    (f"nginx:1.25@{D1}", "docker.io", "library/nginx", "1.25", D1),
    ("registry.local:5000/team-a/web:1.4.2", "registry.local:5000", "team-a/web", "1.4.2", None),
    ("registry.local:5000/web", "registry.local:5000", "web", "latest", None),  # no library/ off Hub
    ("registry.local/web", "registry.local", "web", "latest", None),
    ("127.0.0.1:5000/team-a/web:1.0", "127.0.0.1:5000", "team-a/web", "1.0", None),
    (f"127.0.0.1:5000/team-a/web@{D1}", "127.0.0.1:5000", "team-a/web", None, D1),
    (f"127.0.0.1:5000/base/postgres:16.2@{D3}", "127.0.0.1:5000", "base/postgres", "16.2", D3),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # docker's own reading
    ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
    ("Registry.Local:5000/team/app:1", "registry.local:5000", "team/app", "1", None),  # host case folded
    ("ghcr.io/org/tool:v1.2.3-rc.1_build", "ghcr.io", "org/tool", "v1.2.3-rc.1_build", None),
    ("quay.io/prometheus/node-exporter:v1.7.0", "quay.io", "prometheus/node-exporter", "v1.7.0", None),
    ("registry.k8s.io/coredns/coredns:v1.11.1", "registry.k8s.io", "coredns/coredns", "v1.11.1", None),
    (
        "my-registry.example.com:443/a__b/c.d/e-f---g:TAG_1",
        "my-registry.example.com:443",
        "a__b/c.d/e-f---g",
        "TAG_1",
        None,
    ),  # tags may be uppercase
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, None),
    # runtime imageIDs
    (f"docker-pullable://nginx@{D1}", "docker.io", "library/nginx", None, D1),
    (f"docker-pullable://127.0.0.1:5000/team-a/web@{D1}", "127.0.0.1:5000", "team-a/web", None, D1),
    (f"docker://registry.local:5000/x/y@{D2}", "registry.local:5000", "x/y", None, D2),
    (f"docker.io/library/alpine@{DA}", "docker.io", "library/alpine", None, DA),  # containerd
    ("sha512-ish/app:" + "1" * 10, "docker.io", "sha512-ish/app", "1" * 10, None),
    (f"r.io/app@sha512:{'b' * 128}", "r.io", "app", None, "sha512:" + "b" * 128),
]


@pytest.mark.parametrize("text,host,repo,tag,digest", VALID, ids=[v[0][:60] for v in VALID])
def test_parse_valid(text, host, repo, tag, digest):
    ref = parse_image_ref(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)
    assert ref.name == f"{host}/{repo}"
    # canonical form round-trips to the same value
    assert parse_image_ref(ref.canonical) == ref
    assert str(ref) == ref.canonical


INVALID = [
    ("", "empty"),
    ("Nginx", "must be lowercase"),
    ("Foo/bar", "must be lowercase"),  # not read as a host "Foo"
    ("nginx:", "tag ''"),
    ("registry.local:5000/Team-A/Web:1.0", "must be lowercase"),
    ("127.0.0.1:5000/team-a/WEB", "must be lowercase"),
    ("nginx:has space", "whitespace"),
    (" nginx", "whitespace"),
    ("nginx@sha256:abc", "digest"),  # too short
    (f"nginx@sha256:{'A' * 64}", "lowercase"),
    (f"nginx@sha256:{'a' * 63}", "64 hex"),
    (f"nginx@md5:{'a' * 32}", "unsupported digest algorithm"),
    (f"nginx@{D1}@{D2}", "more than one '@'"),
    (f"@{D1}", "no repository"),
    ("nginx:-bad", "tag"),
    ("nginx:" + "t" * 129, "tag"),
    ("-leading/x", "not valid"),
    ("a//b", "not valid"),
    ("a/b/", "not valid"),
    ("registry.local:5000/", "empty repository"),
    ("bad_host.example.com:5000/app", "host"),
    ("r.io:port/app", "host"),
    ("a" * 64, "64-character hexadecimal"),
    (f"{D1}", "image ID"),  # bare image ID: not a repository
    (f"docker://{D1}", "image ID"),
    ("docker-pullable://", "empty"),
    ("r.io/" + "a" * 260, "longer than 255"),
]


@pytest.mark.parametrize("text,why", INVALID, ids=[v[0][:50] or "empty" for v in INVALID])
def test_parse_invalid_names_the_reference(text, why):
    with pytest.raises(ValueError) as ei:
        parse_image_ref(text)
    msg = str(ei.value)
    assert repr(text) in msg, msg  # names the reference
    assert why in msg, msg


def test_parse_rejects_non_string():
    with pytest.raises(ValueError):
        parse_image_ref(None)  # type: ignore[arg-type]


def test_ref_properties():
    r = parse_image_ref("nginx")
    assert r == ImageRef("docker.io", "library/nginx", "latest", None)
    assert (
        r.familiar_name == "nginx"
        and r.reference == "latest"
        and r.canonical == "docker.io/library/nginx:latest"
    )
    r = parse_image_ref(f"team-a/web:1@{D1}")
    assert r.familiar_name == "team-a/web" and r.reference == D1
    assert r.canonical == f"docker.io/team-a/web:1@{D1}"
    r = parse_image_ref("registry.local:5000/x")
    assert r.familiar_name == "registry.local:5000/x"
    assert parse_image_ref("docker.io/library/a/b").familiar_name == "library/a/b"
    # frozen + hashable (used as dict keys / set members)
    with pytest.raises(Exception):
        r.tag = "other"  # type: ignore[misc]
    assert len({parse_image_ref("nginx"), parse_image_ref("docker.io/library/nginx:latest")}) == 1


# --------------------------------------------------------------------------------------------
# hosts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given,want",
    [
        ("registry.local:5000", "registry.local:5000"),
        ("Registry.LOCAL:5000", "registry.local:5000"),
        ("https://registry.local:5000", "registry.local:5000"),
        ("https://registry.local:5000/", "registry.local:5000"),
        ("http://user:pw@127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("index.docker.io", "docker.io"),
        ("localhost:5000", "localhost:5000"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_normalize_host(given, want):
    assert normalize_host(given) == want


def test_normalize_host_rejects_empty():
    with pytest.raises(ValueError):
        normalize_host("  ")


def test_registry_hosts_url_plus_aliases_deduplicated():
    assert registry_hosts("https://registry.local:5000", ["REGISTRY.local:5000", "10.0.0.5:5000"]) == [
        "registry.local:5000",
        "10.0.0.5:5000",
    ]
    assert registry_hosts(None, ["a:1"]) == ["a:1"]


# --------------------------------------------------------------------------------------------
# for_registry matching and protection semantics
# --------------------------------------------------------------------------------------------
def src(name, field="spec.containers[0].image", kind="Pod", ctx="prod", ns="shop", container="app"):
    return InUseSource(ctx, ns, kind, name, container, field)


def scan_of(*pairs):
    return InUseScan(refs=[(parse_image_ref(r), s) for r, s in pairs], contexts_read=["prod"])


def test_for_registry_matches_host_case_insensitively_and_only_as_given():
    scan = scan_of(
        ("127.0.0.1:5000/team-a/web:1.0", src("a")),
        ("LOCALHOST:5000/team-a/web:2.0", src("b")),
        ("Registry.Local:5000/team-a/web:3.0", src("c")),
        ("team-a/web:4.0", src("d")),  # Docker Hub, same path
        ("127.0.0.1:5001/team-a/web:5.0", src("e")),  # other port
        ("127.0.0.1/team-a/web:6.0", src("f")),  # no port
    )
    u = scan.for_registry(["127.0.0.1:5000"])
    assert set(u.tags_in_use("team-a/web")) == {"1.0"}
    u = scan.for_registry(["127.0.0.1:5000", "REGISTRY.LOCAL:5000"])  # alias, any case
    assert set(u.tags_in_use("team-a/web")) == {"1.0", "3.0"}
    u = scan.for_registry(["localhost:5000"])
    assert set(u.tags_in_use("team-a/web")) == {"2.0"}
    u = scan.for_registry("http://127.0.0.1:5000")  # a URL, as in the config
    assert set(u.tags_in_use("team-a/web")) == {"1.0"}
    assert scan.for_registry(["docker.io"]).tags_in_use("team-a/web") == {"4.0": [src("d")]}
    assert scan.for_registry(["index.docker.io"]).repositories() == ["team-a/web"]
    assert scan.for_registry(["nowhere:1"]).repositories() == []


def test_tags_and_digests_in_use_with_sources():
    s_tag, s_tag2, s_dig, s_both = (
        src("p1"),
        src("p2", kind="ReplicaSet"),
        src("p3"),
        src("db", kind="StatefulSet"),
    )
    scan = scan_of(
        ("r:5000/team-a/web:1.4.2", s_tag),
        ("r:5000/team-a/web:1.4.2", s_tag2),
        (f"r:5000/team-a/web@{D1}", s_dig),
        (f"r:5000/base/pg:16@{D3}", s_both),
    )
    u = scan.for_registry(["r:5000"])
    assert u.repositories() == ["base/pg", "team-a/web"]
    assert u.tags_in_use("team-a/web") == {"1.4.2": [s_tag, s_tag2]}
    assert u.digests_in_use("team-a/web") == {D1: [s_dig]}
    # repo:tag@digest counts for both the tag and the digest
    assert u.tags_in_use("base/pg") == {"16": [s_both]}
    assert u.digests_in_use("base/pg") == {D3: [s_both]}
    assert u.tags_in_use("nope") == {} and u.digests_in_use("nope") == {}
    assert len(u) == 4


def test_protection_semantics():
    s_tag, s_dig, s_report = (
        src("web"),
        src("old-pod", field="status.containerStatuses[0].imageID"),
        src("cron", kind="CronJob"),
    )
    scan = scan_of(
        ("r:5000/team-a/web:1.4.2", s_tag),  # tag in use
        (f"docker-pullable://r:5000/team-a/web@{D1}", s_dig),  # digest in use (old running image)
        (f"r:5000/team-b/report@{D2}", s_report),  # digest only
    )
    u = scan.for_registry(["r:5000"])
    # a tag in use protects its current digest (whatever the caller says it is)
    assert u.is_protected("team-a/web", "1.4.2", DA) == [s_tag]
    # a digest in use protects every tag on it, and the untagged manifest
    assert u.is_protected("team-a/web", "1.0.0-old", D1) == [s_dig]
    assert u.is_protected("team-a/web", None, D1) == [s_dig]
    assert u.is_protected("team-a/web", ["x", "y"], D1) == [s_dig]
    # both reasons at once, no duplicates
    assert u.is_protected("team-a/web", ["1.4.2", "1.4.2"], D1) == [s_dig, s_tag]
    # not in use: a different tag on a different digest
    assert u.is_protected("team-a/web", "1.4.1", D3) == []
    assert u.is_protected("team-a/web", None, D3) == []
    # digests are per repository: the same digest in another repository is not protected
    assert u.is_protected("team-a/other", "1.4.2", D1) == []
    # digest-only reference protects the manifest and all its tags, no tag is "in use"
    assert u.is_protected("team-b/report", "nightly", D2) == [s_report]
    assert u.tags_in_use("team-b/report") == {}
    # other registries see none of this
    assert scan.for_registry(["elsewhere:5000"]).is_protected("team-a/web", "1.4.2", D1) == []


# --------------------------------------------------------------------------------------------
# extracting images from objects
# --------------------------------------------------------------------------------------------
def test_extract_images_from_pod_all_container_kinds_and_statuses():
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "initContainers": [{"name": "i0", "image": "init:1"}],
            "containers": [
                {"name": "c0", "image": "app:1"},
                {"name": "c1", "image": "side:2"},
                {"name": "noimg"},
            ],
            "ephemeralContainers": [{"name": "dbg", "image": "netshoot"}],
        },
        "status": {
            "initContainerStatuses": [{"name": "i0", "imageID": f"docker-pullable://init@{D1}"}],
            "containerStatuses": [{"name": "c0", "imageID": ""}, {"name": "c1", "imageID": f"side@{D2}"}],
            "ephemeralContainerStatuses": [{"name": "dbg", "imageID": f"netshoot@{D3}"}],
        },
    }
    got = list(extract_images("Pod", pod))
    assert got == [
        ("app:1", "c0", "spec.containers[0].image"),
        ("side:2", "c1", "spec.containers[1].image"),
        ("init:1", "i0", "spec.initContainers[0].image"),
        ("netshoot", "dbg", "spec.ephemeralContainers[0].image"),
        (f"side@{D2}", "c1", "status.containerStatuses[1].imageID"),
        (f"docker-pullable://init@{D1}", "i0", "status.initContainerStatuses[0].imageID"),
        (f"netshoot@{D3}", "dbg", "status.ephemeralContainerStatuses[0].imageID"),
    ]


def test_extract_images_from_templates():
    tmpl = {
        "spec": {
            "containers": [{"name": "a", "image": "a:1"}],
            "initContainers": [{"name": "b", "image": "b:1"}],
        }
    }
    for kind in (
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "ReplicationController",
        "Rollout",
    ):
        assert list(extract_images(kind, {"spec": {"template": tmpl}})) == [
            ("a:1", "a", "spec.template.spec.containers[0].image"),
            ("b:1", "b", "spec.template.spec.initContainers[0].image"),
        ], kind
    cron = {"spec": {"jobTemplate": {"spec": {"template": tmpl}}}}
    assert [f for _, _, f in extract_images("CronJob", cron)] == [
        "spec.jobTemplate.spec.template.spec.containers[0].image",
        "spec.jobTemplate.spec.template.spec.initContainers[0].image",
    ]
    assert list(extract_images("Service", {"spec": {"ports": []}})) == []
    assert list(extract_images("Deployment", {})) == []


TMPL = "spec.template.spec"


@pytest.mark.parametrize(
    "kind, obj, problem",
    [
        (
            "Deployment",
            {"spec": {"template": {"spec": {"containers": ["nginx"]}}}},
            f"{TMPL}.containers[0] is a string, expected an object",
        ),
        ("Deployment", {"spec": {"template": [{"spec": {}}]}}, "spec.template is a list, expected an object"),
        (
            "StatefulSet",
            {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 5}]}}}},
            f"{TMPL}.containers[0].image is a number, expected a string",
        ),
        (
            "DaemonSet",
            {"spec": {"template": {"spec": {"initContainers": "busybox"}}}},
            f"{TMPL}.initContainers is a string, expected a list",
        ),
        (
            "Job",
            {"spec": {"template": {"spec": {"containers": [{"name": ["a"], "image": "a:1"}]}}}},
            f"{TMPL}.containers[0].name is a list, expected a string",
        ),
        ("CronJob", {"spec": {"jobTemplate": "nightly"}}, "spec.jobTemplate is a string, expected an object"),
        (
            "CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": {"a": 1}}}}}}},
            "spec.jobTemplate.spec.template.spec.containers is an object, expected a list",
        ),
        ("Pod", {"spec": []}, "spec is a list, expected an object"),
        (
            "Pod",
            {"spec": {"ephemeralContainers": [None, 3]}},
            "spec.ephemeralContainers[0] is null, expected an object",
        ),
        (
            "Pod",
            {"status": {"containerStatuses": [{"name": "a", "imageID": True}]}},
            "status.containerStatuses[0].imageID is a boolean, expected a string",
        ),
        ("Pod", {"status": "Running"}, "status is a string, expected an object"),
    ],
)
def test_extract_images_names_the_field_of_a_malformed_object(kind, obj, problem):
    with pytest.raises(MalformedObjectError) as ei:
        list(extract_images(kind, obj))
    assert str(ei.value) == problem
    assert ei.value.field == problem.split(" is ", 1)[0]


def test_extract_images_null_fields_count_as_absent():
    obj = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": None, "image": "a:1"}, {"image": None}],
                    "initContainers": None,
                }
            }
        },
        "status": None,
    }
    assert list(extract_images("Deployment", obj)) == [("a:1", "", "spec.template.spec.containers[0].image")]
    assert list(extract_images("Pod", {"metadata": None, "spec": None, "status": None})) == []


# --------------------------------------------------------------------------------------------
# snapshots (same parsing code as the live reader)
# --------------------------------------------------------------------------------------------
SUBS = {"{{REGISTRY}}": "127.0.0.1:5055", "{{REGISTRY_PORT}}": "5055"}


def test_snapshot_dir_of_list_responses_finds_every_kind():
    scan = load_snapshot(FIXTURES, substitutions=SUBS, context="sample")
    assert scan.ok and scan.contexts_read == ["sample"]
    assert scan.objects["sample"] == {
        "cronjobs": 1,
        "daemonsets": 1,
        "deployments": 4,
        "jobs": 1,
        "pods": 11,
        "replicasets": 5,
        "statefulsets": 1,
    }
    kinds = {s.kind for _, s in scan.refs}
    assert kinds == {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
    u = scan.for_registry(registry_hosts("http://127.0.0.1:5055", ["registry.local:5000"]))
    assert u.repositories() == [
        "base/node-exporter",
        "base/postgres",
        "team-a/checkout",
        "team-a/envoy",
        "team-a/migrate",
        "team-a/web",
        "team-b/report",
        "team-c/api",
        "tools/netshoot",
        "tools/wait-for",
    ]
    # placeholders were substituted; the localhost look-alike and the uppercase one are not ours
    assert "{{" not in scan.to_json()
    assert set(u.tags_in_use("team-a/web")) == {"1.4.1", "1.4.2"}
    assert [i.value for i in scan.invalid] == ["127.0.0.1:5055/Team-A/Web:1.0"]
    assert "must be lowercase" in scan.invalid[0].reason and scan.invalid[0].source.name == "bad-image"
    # the kind-style bare image ID is skipped, not reported as invalid, not matched anywhere
    assert not any("bbbb" in r.canonical for r, _ in scan.refs)


def test_snapshot_without_substitution_keeps_placeholder_host_invalid():
    scan = load_snapshot(FIXTURES)
    # '{{REGISTRY}}/...' is not a valid reference: reported, never silently matched
    assert any(i.value.startswith("{{REGISTRY}}/team-a/web") for i in scan.invalid)


def test_snapshot_kubectl_list_yaml_multi_context_and_subdirs(tmp_path):
    pods = json.loads(
        (FIXTURES / "pods.json").read_text().replace("{{REGISTRY}}", "r:1").replace("{{REGISTRY_PORT}}", "1")
    )
    cron = json.loads((FIXTURES / "cronjobs.json").read_text().replace("{{REGISTRY}}", "r:1"))
    # kubectl get pods,cronjobs -A -o json: kind List, items carry their kind
    mixed = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [dict(i, kind="Pod", apiVersion="v1") for i in pods["items"]]
        + [dict(i, kind="CronJob", apiVersion="batch/v1") for i in cron["items"]]
        + [
            {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "svc", "namespace": "x"}, "spec": {}}
        ],
    }
    f = tmp_path / "kubectl.json"
    f.write_text(json.dumps(mixed))
    a = load_snapshot(f)
    assert a.contexts_read == ["snapshot:kubectl.json"]
    assert a.objects["snapshot:kubectl.json"] == {"pods": 11, "cronjobs": 1}
    assert any(s.kind == "CronJob" and r.digest == D2 for r, s in a.refs)

    # YAML with several documents
    import yaml

    y = tmp_path / "snap.yaml"
    y.write_text(yaml.safe_dump_all([pods, cron]))
    b = load_snapshot(y, context="yamlctx")
    assert {(r, s.field) for r, s in b.refs} == {(r, s.field) for r, s in a.refs}

    # {"contexts": {...}} in one file
    m = tmp_path / "multi.json"
    m.write_text(json.dumps({"contexts": {"prod": {"pods": pods}, "staging": {"cronjobs": cron}}}))
    c = load_snapshot(m)
    assert c.contexts_read == ["prod", "staging"]
    assert {s.context for _, s in c.refs} == {"prod", "staging"}
    assert all(s.kind == "CronJob" for _, s in c.refs if s.context == "staging")

    # a directory of sub-directories: one context each
    for ctx, doc, name in (("east", pods, "pods.json"), ("west", cron, "cj.json")):
        (tmp_path / "dir" / ctx).mkdir(parents=True)
        (tmp_path / "dir" / ctx / name).write_text(json.dumps(doc))
    d = load_snapshot(tmp_path / "dir")
    assert d.contexts_read == ["east", "west"]
    assert d.objects == {"east": {"pods": 11}, "west": {"cronjobs": 1}}


def test_snapshot_errors_name_the_file(tmp_path):
    with pytest.raises(KubeSnapshotError, match="not found"):
        load_snapshot(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KubeSnapshotError, match=r"bad\.json.*not valid JSON"):
        load_snapshot(bad)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(KubeSnapshotError, match=r"odd\.json.*not a list response"):
        load_snapshot(odd)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KubeSnapshotError, match="no .json/.yaml files"):
        load_snapshot(tmp_path / "empty")


def test_snapshot_malformed_object_fails_its_context_naming_file_object_and_field(tmp_path):
    import yaml

    pods = json.loads((FIXTURES / "pods.json").read_text().replace("{{REGISTRY}}", "r:1"))
    bad = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "team-a"},
                "spec": {"template": {"spec": {"containers": ["nginx"]}}},
            },
            {
                "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": "batch"},
                "spec": {"jobTemplate": {"spec": {"template": ["x"]}}},
            },
            {
                "kind": "Pod",
                "metadata": {"name": "ok", "namespace": "team-a"},
                "spec": {"containers": [{"name": "app", "image": "r:1/team-a/ok:1"}]},
            },
        ],
    }
    (tmp_path / "snap" / "prod").mkdir(parents=True)
    (tmp_path / "snap" / "staging").mkdir()
    (tmp_path / "snap" / "prod" / "pods.json").write_text(json.dumps(pods))
    (tmp_path / "snap" / "staging" / "all.yaml").write_text(yaml.safe_dump(bad))
    scan = load_snapshot(tmp_path / "snap")
    f = tmp_path / "snap" / "staging" / "all.yaml"
    assert scan.contexts_read == ["prod"] and scan.contexts_failed == ["staging"]
    assert [str(e) for e in scan.errors] == [
        f"context 'staging': Kubernetes snapshot {f}: Deployment team-a/web: "
        f"spec.template.spec.containers[0] is a string, expected an object; "
        f"Kubernetes snapshot {f}: CronJob batch/nightly: "
        f"spec.jobTemplate.spec.template is a list, expected an object"
    ]
    # the valid context is read in full; the readable object of the failed one still protects
    assert scan.objects["prod"] == {"pods": 11} and any(s.context == "prod" for _, s in scan.refs)
    assert [(s.context, s.name) for _, s in scan.refs if s.context == "staging"] == [("staging", "ok")]
    with pytest.raises(KubeReadError, match=r"all\.yaml: Deployment team-a/web: spec\.template"):
        scan.raise_if_incomplete()


def test_snapshot_items_without_object_shape_or_kind_are_not_skipped(tmp_path):
    f = tmp_path / "odd.json"
    f.write_text(
        json.dumps(
            {
                "kind": "List",
                "items": [
                    "a string",
                    {"metadata": {"name": "no-kind"}, "spec": {"containers": [{"image": "x:1"}]}},
                ],
            }
        )
    )
    scan = load_snapshot(f, context="c")
    assert scan.contexts_read == [] and [e.reason for e in scan.errors] == [
        f"Kubernetes snapshot {f}: List items[0] is a string, expected an object; "
        f"Kubernetes snapshot {f}: items[1]: kind is missing"
    ]
    f.write_text(json.dumps({"kind": "PodList", "items": [{"metadata": ["p"]}] * 5}))
    (err,) = load_snapshot(f, context="c").errors
    assert err.reason.endswith(
        "Pod items[2]: metadata is a list, expected an object (and 2 more malformed objects)"
    )
    f.write_text(json.dumps({"kind": "PodList", "items": {"metadata": {}}}))
    with pytest.raises(KubeSnapshotError, match=r"odd\.json: items is an object, expected a list"):
        load_snapshot(f)
    f.write_text(json.dumps({"format": "regkeeper.kube.InUseScan/v1", "refs": [{"ref": "x:1"}]}))
    with pytest.raises(KubeSnapshotError, match=r"odd\.json is a saved scan that cannot be read: KeyError"):
        load_snapshot(f)


# --------------------------------------------------------------------------------------------
# persistence and failure reporting
# --------------------------------------------------------------------------------------------
def test_scan_json_round_trip_and_saved_scan_as_snapshot(tmp_path):
    scan = load_snapshot(FIXTURES, substitutions=SUBS, context="sample")
    scan.errors.append(ContextError("staging", "HTTP 500 Internal Server Error listing pods", "pods", 500))
    text = scan.to_json()
    doc = json.loads(text)
    assert doc["format"] == "regkeeper.kube.InUseScan/v1"
    back = InUseScan.from_json(text)
    assert back.refs == scan.refs and back.errors == scan.errors and back.invalid == scan.invalid
    assert back.contexts_read == scan.contexts_read and back.objects == scan.objects
    assert InUseScan.from_json(doc).refs == scan.refs
    f = tmp_path / "scan.json"
    f.write_text(text)
    assert load_snapshot(f).refs == scan.refs
    with pytest.raises(ValueError, match="not a regkeeper in-use scan"):
        InUseScan.from_json("{}")


def test_raise_if_incomplete_names_each_context_and_reason():
    ok = InUseScan(contexts_read=["prod"])
    ok.raise_if_incomplete()  # nothing to say
    assert ok.ok and ok.failure_message() == ""
    bad = InUseScan(
        contexts_read=["prod"],
        errors=[
            ContextError("staging", "HTTP 403 Forbidden listing deployments.apps", "deployments.apps", 403),
            ContextError("dr", "cannot connect to API server https://10.0.0.9:6443 (connection refused)"),
        ],
    )
    with pytest.raises(KubeReadError) as ei:
        bad.raise_if_incomplete()
    assert isinstance(ei.value, RefusedError)
    msg = str(ei.value)
    assert "'staging'" in msg and "403" in msg and "deployments.apps" in msg
    assert "'dr'" in msg and "connection refused" in msg and "failClosed" in msg
    assert ei.value.errors == bad.errors and bad.contexts_failed == ["staging", "dr"]
    assert "2 contexts" in bad.failure_message()


def test_in_use_scan_summary_counts_read_as_words():
    from regkeeper.kube.inuse import InUseScan, InUseSource

    src = InUseSource("prod", "ns", "Deployment", "d", "c", "spec")
    one = InUseScan(
        refs=[(parse_image_ref("r.local/a:1"), src)], contexts_read=["prod"], duration_seconds=0.5
    )
    assert one.summary().startswith("1 image reference (1 distinct) from 1 context in 0.50s")
    two = InUseScan(refs=[(parse_image_ref("r.local/a:1"), src)] * 2, contexts_read=["prod", "ci"])
    assert two.summary().startswith("2 image references (1 distinct) from 2 contexts in")
