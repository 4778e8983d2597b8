import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench

port, n, label, pid, path = (
    int(sys.argv[1]),
    int(sys.argv[2]),
    sys.argv[3],
    int(sys.argv[4]),
    sys.argv[5],
)
p = bench.Payload(1 << 30)
c = bench.Client("127.0.0.1", port)
for i in range(n):
    bench.os.sync()
    cpu0 = bench.cpu_seconds(bench.process_tree(pid))
    t = time.perf_counter()
    if path == "pyreg":
        bench.upload_single(c, f"http://127.0.0.1:{port}", p, 1000 + i)
    else:
        c.request("POST", "/v2/x/blobs/uploads/")
        c.request(
            "PUT",
            "/up/1?digest=x",
            body=p.iter_range(1, 0, p.size),
            headers={"Content-Length": str(p.size)},
        )
    wall = time.perf_counter() - t
    cpu = bench.cpu_seconds(bench.process_tree(pid)) - cpu0
    print(f"{label:28s} {1024 / wall:5.0f} MiB/s  server CPU {cpu:.2f} s/GiB", flush=True)
