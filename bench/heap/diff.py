"""What grew in a heaptrack trace between two moments, by allocation site.

Usage: diff.py TRACE.zst live_T1.txt live_T2.txt (the live counts `live.c` wrote). Prints the
live heap at both moments and the growth grouped by the first three frames that are not
allocator or std plumbing, largest first. heaptrack's raw format: '+ idx'/'- idx' allocate /
free with allocation info idx; 'a size trace' defines an info; 't ip parent' a trace node;
'i ip module [function …]' an instruction; 's len text' a string; 'c ms' the clock.
"""
import sys, subprocess, collections, re
trace_file, f1, f2 = sys.argv[1], sys.argv[2], sys.argv[3]
def load(f):
    d = {}
    for l in open(f):
        i, n = l.split(); d[int(i)] = int(n)
    return d
s1, s2 = load(f1), load(f2)
strings=[None]; ips=[None]; traces=[(0,0)]; infos=[]
p = subprocess.Popen(f"zstd -dc {trace_file} | grep -v '^[+-]'", shell=True, stdout=subprocess.PIPE)
for raw in p.stdout:
    c = raw[:1]
    if c == b'a':
        _, sz, tr = raw.split(); infos.append((int(sz,16), int(tr,16)))
    elif c == b't':
        _, ip, par = raw.split(); traces.append((int(ip,16), int(par,16)))
    elif c == b'i':
        f = raw.split()
        fn = strings[int(f[3],16)] if len(f) > 3 else f[1].decode()
        ips.append(fn)
    elif c == b's':
        strings.append(raw[2:].split(b' ',1)[1].rstrip(b'\n').decode(errors='replace'))
def live_bytes(s): return sum(n*infos[i][0] for i, n in s.items() if i < len(infos))
print('live heap MB at t1 %.1f, t2 %.1f' % (live_bytes(s1)/1e6, live_bytes(s2)/1e6))
d = collections.Counter()
for idx in set(s1) | set(s2):
    n = s2.get(idx,0) - s1.get(idx,0)
    if n and idx < len(infos): d[idx] = n*infos[idx][0]
def stack(tr, depth):
    out=[]
    while tr and len(out) < depth:
        ip, par = traces[tr]; out.append(ips[ip]); tr = par
    return out
bytrace = collections.Counter()
for idx, b in d.items(): bytrace[infos[idx][1]] += b
skip = re.compile(r'alloc|hashbrown|RawVec|core::|__rust|_RNv|clone|from_iter|Vec\$|collect|fold|try_fold|map|into_iter|spec_|to_vec|to_owned|String|Box|Arc|malloc|realloc|std::')
agg = collections.Counter(); 
for tr, b in bytrace.items():
    st = stack(tr, 40)
    key = tuple([f for f in st if not skip.search(f)][:3])
    agg[key] += b
print('total growth t1->t2 MB %.2f' % (sum(d.values())/1e6))
for k, b in agg.most_common(20):
    print(f'{b/1e6:8.2f} MB', ' <- '.join(x[:100] for x in k))
