import sys, re, collections
# Buckets each sample by the innermost frame whose symbol matches one of the named groups.
groups = [
 ('kernel: socket write', r'writev|tcp_sendmsg|sock_write'),
 ('kernel: socket read/epoll', r'recvfrom|tcp_recvmsg|epoll_wait|sock_read|__libc_recv|readv'),
 ('sqlite (C)', r'sqlite3|libsqlite'),
 ('sqlx', r'^sqlx'),
 ('ed25519/sha512 signing', r'ed25519|curve25519|sha512|Sha512'),
 ('sha256 (fingerprint, key digest)', r'sha2::sha256|Sha256'),
 ('idempotency layer', r'^idempotency::|<idempotency::'),
 ('serde_json', r'serde_json'),
 ('attestix_core', r'attestix_core'),
 ('attestix_server', r'attestix_server'),
 ('tracing / logging', r'tracing'),
 ('metrics', r'^metrics|<metrics'),
 ('tower_http / request id / uuid', r'tower_http|uuid'),
 ('hyper http/1', r'hyper::|<hyper'),
 ('axum routing', r'axum'),
 ('tokio scheduler/io', r'tokio::|<tokio'),
]
comp = [(n, re.compile(p)) for n, p in groups]
counts = collections.Counter(); total = 0; stack = []
def flush():
    global total
    if not stack: return
    total += 1
    for f in stack:
        sym = f.split(' (')[0]
        for n, r in comp:
            if r.search(sym):
                counts[n] += 1; return
    counts['other (libc, kernel scheduling, ...)'] += 1
for line in open(sys.argv[1], errors='replace'):
    line = line.rstrip('\n')
    if not line.strip():
        flush(); stack = []; continue
    if line.startswith('\t') or line.startswith(' '):
        parts = line.strip().split(' ', 1)
        if len(parts) == 2: stack.append(parts[1])
flush()
print(f"{total} samples")
for k, v in counts.most_common(): print(f"{100*v/total:5.1f}%  {k}")
