#!/usr/bin/env python3
"""Result bookkeeping of xfstests-runner/run (host side). Subcommands:

  record STATE BOOT_DIR VMRC   merge one VM boot's fstests xunit report (BOOT_DIR/results/result.xml)
                               into STATE/results.tsv; when the guest died or timed out, the test
                               that was running (last one named in BOOT_DIR/check.out) is recorded
                               as failed so a resumed run does not hang on it again.
                               Prints how many results were added.
  junit STATE OUT.xml          one JUnit file with the latest fstests testcase of every test
  summary STATE LOOP_STATE BASELINE_FILE   prints the summary line (and the failure lists before it)
  baseline LOOP_STATE [FILE]   prints the baseline file FILE updated with the failures of a loop run
  to-ledger STATE LEDGER_DIR   saves what a run's verdict rests on (settings, tests, results.tsv and
                               the image checks of every boot, as images.tsv) to LEDGER_DIR
  from-ledger LEDGER_DIR STATE starts STATE from a ledger entry (each boot's image checks go back to
                               STATE/boots/<boot>/images; the boots' logs are not in a ledger)

results.tsv: TEST<TAB>pass|fail|notrun<TAB>SECONDS<TAB>BOOT<TAB>MESSAGE (later lines win).
images.tsv (ledger): BOOT<TAB>a line of that boot's images file (IMAGE clean|dirty|no-check ...).
"""
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET

TEST_RE = re.compile(r'^((?:generic|shared|xfs|ext4|btrfs|overlay)/\d+)\b')


def load(state):
    res = {}
    path = os.path.join(state, 'results.tsv')
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip('\n').split('\t')
                if len(parts) >= 2:
                    res[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else '',
                                     parts[3] if len(parts) > 3 else '', parts[4] if len(parts) > 4 else '')
    return res


def tests(state):
    with open(os.path.join(state, 'tests')) as f:
        return [t.strip() for t in f if t.strip()]


def one_line(s, n=200):
    s = ' '.join((s or '').split())
    return s[:n]


def last_started(check_out):
    """The last test ./check's console (check.out) names, or None."""
    last = None
    if os.path.exists(check_out):
        with open(check_out, errors='replace') as f:
            for line in f:
                m = TEST_RE.match(line)
                if m:
                    last = m.group(1)
    return last


def record(state, boot, vmrc):
    xml = os.path.join(boot, 'results', 'result.xml')
    rows = []
    if os.path.exists(xml):
        for tc in ET.parse(xml).getroot().iter('testcase'):
            name, t = tc.get('name'), tc.get('time', '')
            fail, skip = tc.find('failure'), tc.find('skipped')
            if fail is not None:
                rows.append((name, 'fail', t, one_line(fail.get('message'))))
            elif skip is not None:
                rows.append((name, 'notrun', t, one_line(skip.get('message'))))
            else:
                rows.append((name, 'pass', t, ''))
    # fstests rewrites result.xml after every test, so a boot that died keeps the results before the
    # crash; the test that was running (last one named in check.out, without a result) is recorded
    # as failed so that a resumed run does not hang on it again. vm-run exits 125 when the guest
    # ended without an exit status (panic, timeout). A run stopped by its operator (vmrc
    # 'interrupted') keeps the reported results only.
    # A boot stopped on request ('stopped': run --stop) ended ./check early and checked its images:
    # its results stand, except the last test ./check started, which may have been cut short (it
    # runs again on resume, even if it had just finished).
    if vmrc == 'stopped':
        last = last_started(os.path.join(boot, 'check.out'))
        rows = [r for r in rows if r[0] != last]
    elif vmrc != 'interrupted' and (vmrc == '125' or not os.path.exists(xml)):
        last = last_started(os.path.join(boot, 'check.out'))
        if last and last not in {r[0] for r in rows}:
            rows.append((last, 'fail', '', f'guest died or timed out while this test ran (vm-run exit {vmrc})'))
    with open(os.path.join(state, 'results.tsv'), 'a') as f:
        for r in rows:
            f.write('\t'.join((r[0], r[1], r[2], os.path.basename(boot), r[3].replace('\t', ' '))) + '\n')
    print(len(rows))


def junit(state, out):
    latest = {}
    boots = os.path.join(state, 'boots')
    for b in sorted(os.listdir(boots), key=lambda s: int(s) if s.isdigit() else 0) if os.path.isdir(boots) else []:
        xml = os.path.join(boots, b, 'results', 'result.xml')
        if os.path.exists(xml):
            for tc in ET.parse(xml).getroot().iter('testcase'):
                latest[tc.get('name')] = tc
    suite = ET.Element('testsuite', name='xfstests ' + os.path.basename(state.rstrip('/')))
    fails = skips = 0
    for name in sorted(latest):
        tc = latest[name]
        fails += tc.find('failure') is not None
        skips += tc.find('skipped') is not None
        suite.append(tc)
    # tests without a report of their own get a testcase from results.tsv: a failure recorded when
    # the guest died, and every result of a run started from a ledger (whose boots' reports stayed on
    # the machine that ran them)
    for name, (st, t, boot, msg) in sorted(load(state).items()):
        if name not in latest:
            tc = ET.SubElement(suite, 'testcase', classname='xfstests.global', name=name, time=t or '0')
            if st == 'fail':
                ET.SubElement(tc, 'failure', message=msg, type='TestFail')
                fails += 1
            elif st == 'notrun':
                ET.SubElement(tc, 'skipped', message=msg)
                skips += 1
    suite.set('tests', str(len(suite)))
    suite.set('failures', str(fails))
    suite.set('skipped', str(skips))
    ET.ElementTree(suite).write(out, encoding='UTF-8', xml_declaration=True)


def read_baseline(path):
    b = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith('#'):
                    t, _, why = line.partition(' ')
                    b[t] = why
    return b


def boot_images(state):
    """(boot, line) for every line of every boot's image checks (STATE/boots/<boot>/images), boots in order."""
    boots = os.path.join(state, 'boots')
    out = []
    for b in sorted(os.listdir(boots), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s)) \
            if os.path.isdir(boots) else []:
        p = os.path.join(boots, b, 'images')
        if os.path.exists(p):
            with open(p) as f:
                out += [(b, l.rstrip()) for l in f if l.strip()]
    return out


def summary(state, loop_state, baseline_file):
    with open(os.path.join(state, 'settings')) as f:
        s = dict(l.rstrip('\n').split('=', 1) for l in f if '=' in l)
    res = load(state)
    want = tests(state)
    got = {t: res[t] for t in want if t in res}
    passed = [t for t, r in got.items() if r[0] == 'pass']
    failed = sorted(t for t, r in got.items() if r[0] == 'fail')
    notrun = [t for t, r in got.items() if r[0] == 'notrun']
    loop = load(loop_state) if loop_state and os.path.isdir(loop_state) and loop_state != state else {}
    base = read_baseline(baseline_file)
    baseline, new, unjudged = [], [], []
    for t in failed:
        if s['target'] == 'loop' or t in base or loop.get(t, ('',))[0] == 'fail':
            baseline.append(t)
        elif loop.get(t, ('',))[0] == 'pass':
            new.append(t)
        else:
            unjudged.append(t)  # no loop result to compare with: counted as new, listed apart
    clean = 'n/a'
    imgs = [l.split()[1] for _, l in boot_images(state) if len(l.split()) > 1]
    if any(x == 'dirty' for x in imgs):
        clean = 'no'
    elif any(x == 'clean' for x in imgs):
        clean = 'yes'
    for t in failed:
        r = got[t]
        kind = 'baseline' if t in baseline else ('NEW' if t in new else 'NEW (no loop result)')
        print(f'xfstests: failed {t} [{kind}]: {r[3]} (results: {state}/boots/{r[2]}/results, /vmout = boots/{r[2]})')
    pending = len(want) - len(got)
    print(f'xfstests: state {state}: {len(got)} of {len(want)} tests have a result, {pending} pending'
          + (f'; loop reference {loop_state} ({len(loop)} results)' if loop else '; no loop reference results'))
    print(f"xfstests: fs={s['fs']} target={s['target']} kernel={s['kernel']} ran={len(passed) + len(failed)} "
          f"passed={len(passed)} failed={len(failed)} notrun={len(notrun)} baseline-failures={len(baseline)} "
          f"new-failures={len(new) + len(unjudged)} images-clean={clean}")
    return 0 if not new and not unjudged and clean != 'no' else 1


LEDGER_FILES = ('settings', 'tests', 'results.tsv')


def write_atomically(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def to_ledger(state, ledger):
    os.makedirs(ledger, exist_ok=True)
    for name in LEDGER_FILES:
        src = os.path.join(state, name)
        if os.path.exists(src):
            with open(src) as f:
                write_atomically(os.path.join(ledger, name), f.read())
    write_atomically(os.path.join(ledger, 'images.tsv'), ''.join(f'{b}\t{l}\n' for b, l in boot_images(state)))


def from_ledger(ledger, state):
    if os.path.exists(os.path.join(state, 'settings')):
        sys.exit(f'xfstests: {state} already has a run; not overwriting it from {ledger}')
    os.makedirs(os.path.join(state, 'boots'), exist_ok=True)
    for name in LEDGER_FILES:
        src = os.path.join(ledger, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(state, name))
    imgs = os.path.join(ledger, 'images.tsv')
    if os.path.exists(imgs):
        with open(imgs) as f:
            for line in f:
                boot, _, rest = line.rstrip('\n').partition('\t')
                if boot and rest:
                    os.makedirs(os.path.join(state, 'boots', boot), exist_ok=True)
                    with open(os.path.join(state, 'boots', boot, 'images'), 'a') as g:
                        g.write(rest + '\n')


EVIDENCE_RE = re.compile(r'BAD DATA|\*\*\*[A-Z]+\*\*\*|[Cc]orrupt|BUG:|WARNING:|Oops|failed:|Input/output error')


def evidence(results, test):
    """The first telling line of a failed test's output (fsx miscompare, kernel warning, I/O error)."""
    for suffix in ('.0.full', '.out.bad', '.full', '.dmesg'):
        p = os.path.join(results, test + suffix)
        if os.path.exists(p):
            with open(p, errors='replace') as f:
                for line in f:
                    if EVIDENCE_RE.search(line):
                        return one_line(line, 120)
    return ''


def baseline(loop_state, existing):
    """The baseline file of this fs and kernel, updated with one loop run: its failures are added
    (reason: fstests' message), tests it ran that passed or were not run are dropped, lines of
    tests it did not run are kept (they came from other loop runs)."""
    with open(os.path.join(loop_state, 'settings')) as f:
        s = dict(l.rstrip('\n').split('=', 1) for l in f if '=' in l)
    res = load(loop_state)
    lines = {t: f'{t} {why}' for t, why in read_baseline(existing).items() if t not in res}
    for t, r in res.items():
        if r[0] == 'fail':
            why = r[3] or 'no message'
            ev = evidence(os.path.join(loop_state, 'boots', r[2], 'results'), t)
            lines[t] = f'{t} fails on loop ({os.path.basename(loop_state)}): {why}' + (f'; {ev}' if ev else '')
    print(f"# Tests that fail on the kernel's own loop device (fs={s['fs']} kernel={s['kernel']}): a failure")
    print("# here is the guest kernel's or the sandbox's, not qblk's. Produced by")
    print("# `xfstests-runner/run --target loop --make-baseline ...` from loop runs, never edited by hand.")
    print('# TEST REASON (the loop run and fstests\' message)')
    for t in sorted(lines):
        print(lines[t])


def main(argv):
    cmd = argv[1]
    if cmd == 'record':
        record(argv[2], argv[3], argv[4])
    elif cmd == 'junit':
        junit(argv[2], argv[3])
    elif cmd == 'summary':
        return summary(argv[2], argv[3], argv[4])
    elif cmd == 'to-ledger':
        to_ledger(argv[2], argv[3])
    elif cmd == 'from-ledger':
        from_ledger(argv[2], argv[3])
    elif cmd == 'baseline':
        baseline(argv[2], argv[3] if len(argv) > 3 else None)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
