"""Per-request cost of Mesh.check against Mesh.check_many, in one run: the payments policies, the same L4
request N times. Run with the package installed in release mode:

    pip install ./bindings/python && python bindings/python/bench/check.py
"""

import pathlib
import time

from mesh_policy import Mesh

POLICIES = pathlib.Path(__file__).parent.parent / "examples" / "policies" / "payments.yaml"
REQUEST = {
    "destination": {"namespace": "payments", "workload_labels": {"app": "ledger"}, "port": 8080},
    "source": {"principal": "cluster.local/ns/payments/sa/accounts"},
}
N = 20_000


def main() -> None:
    mesh = Mesh()
    mesh.apply_file(str(POLICIES))
    requests = [REQUEST] * N
    for _ in range(3):
        started = time.perf_counter()
        for request in requests:
            mesh.check(request)
        one = (time.perf_counter() - started) / N
        started = time.perf_counter()
        mesh.check_many(requests)
        many = (time.perf_counter() - started) / N
        print(f"check {one * 1e6:.2f} µs/request, check_many {many * 1e6:.2f} µs/request ({many / one:.2f}×)")


if __name__ == "__main__":
    main()
