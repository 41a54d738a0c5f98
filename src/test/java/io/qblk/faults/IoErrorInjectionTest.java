package io.qblk.faults;

import io.qblk.testing.FaultyBackend;
import io.qblk.testing.IoEvent;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.RecordingBackend;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.io.Errno;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import org.junit.jupiter.api.Test;

/** Exhaustive EIO/ENOSPC injection on every write, datasync and allocation of every workload. */
class IoErrorInjectionTest {

    @Test
    void everyInjectedErrorIsReportedAndLeavesAConsistentImage() throws Exception {
        long seed = CrashStateExplorerTest.seed();
        IoErrorInjector x = new IoErrorInjector(seed, System.out);
        x.run(IoErrorInjector.workloads("all", seed), 1);
        System.out.println(x.summary());
        assertTrue(x.injected > 1000, "too few injections: " + x.injected);
        assertEquals(0, x.silent, "errors that did not reach the caller (seed " + seed + ")");
        assertEquals("io-errors: injected=" + x.injected + " corrupt=0 lost=0", x.summary(), "seed " + seed);
    }

    /** The checks must notice a write that claims success but never reached the disk. */
    @Test
    void swallowedWriteIsCaught() throws Exception {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        IoErrorInjector x = new IoErrorInjector(3, new PrintStream(buf, true));
        Workload w = Workload.generate("alloc", 65536, 3, true);
        MemoryBackend template = new MemoryBackend();
        Qcow2Image.create(template, CreateOptions.defaults(w.virtualSize()).withClusterSize(w.clusterSize()));
        byte[] base = template.snapshot();
        long lostStates = 0;
        for (long n = 1; n <= 6; n++) {
            FaultyBackend fb = new FaultyBackend(new MemoryBackend(base)).failNth(IoErrorInjector.Target.WRITE.ops, n, Errno.EIO);
            fb.swallowWrites = true;
            RecordingBackend rec = new RecordingBackend(fb);
            try (Qcow2Image img = Qcow2Image.open(rec, io.qblk.qcow2.OpenOptions.defaults())) {
                var ops = new java.util.ArrayList<>(w.run(img, rec::clock, false, null));
                ops.add(new GuestOp(ops.size(), GuestOp.Type.FLUSH, 0, 0, true, rec.clock(), rec.clock()));
                long before = x.checker.lost + x.checker.corrupt + x.checker.foreign;
                // the recorder saw the write succeed; the disk never got it: drop it from the log
                var log = new java.util.ArrayList<IoEvent>();
                int writes = 0;
                for (IoEvent e : rec.log()) if (e.kind() != IoEvent.Kind.WRITE || ++writes != n) log.add(e);
                x.checker.exploreFrom(new CrashStateExplorer.Recorded(w, base, log, java.util.List.copyOf(ops)), Long.MAX_VALUE - 1, 1);
                if (x.checker.lost + x.checker.corrupt + x.checker.foreign > before) lostStates++;
            }
        }
        assertTrue(lostStates > 0, "a swallowed write must show up as lost or foreign data:\n" + buf);
    }
}
