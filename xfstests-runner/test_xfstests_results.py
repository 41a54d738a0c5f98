#!/usr/bin/env python3
"""Host tests of xfstests-results.py's bookkeeping (no VM): a ledger round trip keeps the verdict.

Run: python3 xfstests-runner/test_xfstests_results.py (.ci/run does).
"""
import contextlib
import importlib.util
import io
import os
import tempfile
import unittest
import xml.etree.ElementTree as ET

_spec = importlib.util.spec_from_file_location(
    'xfstests_results', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'xfstests-results.py'))
xr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(xr)

REPORT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="xfstests" tests="3">
  <testcase classname="xfstests.global" name="generic/001" time="5"/>
  <testcase classname="xfstests.global" name="generic/002" time="7"><failure message="output mismatch" type="TestFail"/></testcase>
  <testcase classname="xfstests.global" name="generic/003" time="0"><skipped message="no scsi_debug"/></testcase>
</testsuite>
"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def summary_of(state, loop_state, baseline):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = xr.summary(state, loop_state, baseline)
    lines = out.getvalue().splitlines()
    return rc, lines[-1]


class LedgerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.state = os.path.join(self.d, 'old-machine', 'xfs-qcow2-6.1-quick')
        write(os.path.join(self.state, 'settings'), 'fs=xfs\ntarget=qcow2\nkernel=6.1\nname=quick\n')
        write(os.path.join(self.state, 'tests'), 'generic/001\ngeneric/002\ngeneric/003\ngeneric/004\n')
        write(os.path.join(self.state, 'boots', '1', 'results', 'result.xml'), REPORT)
        write(os.path.join(self.state, 'boots', '1', 'images'), 'test clean\nscratch clean\n')
        with contextlib.redirect_stdout(io.StringIO()):
            xr.record(self.state, os.path.join(self.state, 'boots', '1'), '0')
        self.loop = os.path.join(self.d, 'old-machine', 'xfs-loop-6.1-quick')
        write(os.path.join(self.loop, 'settings'), 'fs=xfs\ntarget=loop\nkernel=6.1\nname=quick\n')
        write(os.path.join(self.loop, 'tests'), 'generic/002\n')
        write(os.path.join(self.loop, 'results.tsv'), 'generic/002\tpass\t6\t1\t\n')
        self.baseline = os.path.join(self.d, 'baseline')
        write(self.baseline, '')

    def tearDown(self):
        self.tmp.cleanup()

    def test_a_run_started_from_its_ledger_gives_the_same_summary_and_pending_list(self):
        before = summary_of(self.state, self.loop, self.baseline)
        self.assertIn('ran=2 passed=1 failed=1 notrun=1', before[1])
        self.assertIn('new-failures=1 images-clean=yes', before[1])
        ledger = os.path.join(self.d, 'ledger', 'xfs-qcow2-6.1-quick')
        xr.to_ledger(self.state, ledger)
        self.assertEqual(sorted(os.listdir(ledger)), ['images.tsv', 'results.tsv', 'settings', 'tests'])
        fresh = os.path.join(self.d, 'new-machine', 'xfs-qcow2-6.1-quick')
        xr.from_ledger(ledger, fresh)
        self.assertEqual(summary_of(fresh, self.loop, self.baseline), before)
        self.assertEqual(set(xr.load(fresh)), {'generic/001', 'generic/002', 'generic/003'})
        self.assertNotIn('generic/004', xr.load(fresh))

    def test_a_dirty_image_in_the_ledger_still_fails_the_run(self):
        write(os.path.join(self.state, 'boots', '2', 'images'), 'scratch dirty leaked clusters: 3\n')
        ledger = os.path.join(self.d, 'ledger', 'x')
        xr.to_ledger(self.state, ledger)
        fresh = os.path.join(self.d, 'new-machine', 'x')
        xr.from_ledger(ledger, fresh)
        rc, line = summary_of(fresh, self.loop, self.baseline)
        self.assertEqual(rc, 1)
        self.assertIn('images-clean=no', line)

    def test_junit_of_a_ledger_run_has_every_result(self):
        ledger = os.path.join(self.d, 'ledger', 'x')
        xr.to_ledger(self.state, ledger)
        fresh = os.path.join(self.d, 'new-machine', 'x')
        xr.from_ledger(ledger, fresh)
        out = os.path.join(self.d, 'junit.xml')
        xr.junit(fresh, out)
        suite = ET.parse(out).getroot()
        cases = {tc.get('name'): tc for tc in suite.iter('testcase')}
        self.assertEqual(set(cases), {'generic/001', 'generic/002', 'generic/003'})
        self.assertIsNotNone(cases['generic/002'].find('failure'))
        self.assertIsNotNone(cases['generic/003'].find('skipped'))
        self.assertEqual((suite.get('tests'), suite.get('failures'), suite.get('skipped')), ('3', '1', '1'))

    def test_a_ledger_never_overwrites_a_run(self):
        with self.assertRaises(SystemExit):
            xr.from_ledger(os.path.join(self.d, 'ledger', 'none'), self.state)


class RecordTest(unittest.TestCase):
    """How a boot's end decides what it recorded: a stop, an operator's signal, a guest that died."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.state = os.path.join(self.tmp.name, 'xfs-qcow2-6.1-quick')
        write(os.path.join(self.state, 'settings'), 'fs=xfs\ntarget=qcow2\nkernel=6.1\nname=quick\n')
        self.boot = os.path.join(self.state, 'boots', '1')
        # ./check reported 001-003 (its xunit file is rewritten after every test) and had started 003
        write(os.path.join(self.boot, 'results', 'result.xml'), REPORT)
        write(os.path.join(self.boot, 'check.out'), 'generic/001  5s\ngeneric/002  - output mismatch\ngeneric/003\n')

    def tearDown(self):
        self.tmp.cleanup()

    def recorded(self, vmrc):
        with contextlib.redirect_stdout(io.StringIO()):
            xr.record(self.state, self.boot, vmrc)
        with open(os.path.join(self.state, 'results.tsv')) as f:
            return {l.split('\t')[0]: l.split('\t')[1] for l in f}

    def test_a_stopped_boot_keeps_its_results_but_the_test_it_may_have_cut_short(self):
        self.assertEqual({'generic/001': 'pass', 'generic/002': 'fail'}, self.recorded('stopped'))

    def test_an_interrupted_boot_keeps_what_check_reported(self):
        self.assertEqual({'generic/001': 'pass', 'generic/002': 'fail', 'generic/003': 'notrun'}, self.recorded('interrupted'))

    def test_a_guest_that_died_fails_the_test_it_was_running(self):
        write(os.path.join(self.boot, 'check.out'), 'generic/001  5s\ngeneric/002  - output mismatch\ngeneric/003  0s\ngeneric/004\n')
        self.assertEqual('fail', self.recorded('125')['generic/004'])


if __name__ == '__main__':
    unittest.main()
