package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.CacheMode;
import io.qblk.io.LibC;
import io.qblk.io.FilePlan;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Qcow2Image#planRead}, what a ublk tag links to its commit: a plan exists exactly when the
 * request is one run of allocated, host-contiguous clusters; reading the planned descriptor at the
 * planned offset gives what {@link Qcow2Image#read} gives; and the plan holds the image (an exclusive
 * operation such as close waits) until it is released, from another thread.
 */
@Timeout(120)
class PlannedReadTest {
    static final int CS = 65536;
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    /** What each guest cluster holds in the test's model. */
    enum State { UNALLOCATED, DATA, ZERO }

    @Test
    void aPlanExistsExactlyForOneAllocatedRunAndReadsWhatReadReads() throws Exception {
        for (CacheMode cache : new CacheMode[] {CacheMode.NONE, CacheMode.WRITEBACK}) {
            Path p = dir.resolve("img-" + cache + ".qcow2");
            Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(CS));
            SplittableRandom rnd = new SplittableRandom(42);
            State[] model = new State[(int) (SIZE / CS)];
            java.util.Arrays.fill(model, State.UNALLOCATED);
            try (Arena arena = Arena.ofShared();
                 Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheMode(cache))) {
                // Data in runs of 1-4 clusters (allocated in order: host-contiguous within a run), zeroes, holes.
                for (int i = 0; i < 200; i++) {
                    int g = rnd.nextInt(model.length - 4), n = 1 + rnd.nextInt(4);
                    int kind = rnd.nextInt(10);
                    if (kind < 7) {
                        img.write((long) g * CS, TestImages.pattern((long) n * CS, rnd.nextInt()));
                        for (int k = 0; k < n; k++) model[g + k] = State.DATA;
                    } else if (kind < 9) {
                        img.writeZeroes((long) g * CS, (long) n * CS, false);
                        for (int k = 0; k < n; k++) if (model[g + k] == State.DATA) model[g + k] = State.ZERO;
                    }
                }
                int planned = 0, notPlanned = 0;
                FilePlan plan = new FilePlan();
                for (int i = 0; i < 3000; i++) {
                    long len = 4096L * (1 + rnd.nextInt(32));
                    long off = 4096L * rnd.nextLong(SIZE / 4096 - len / 4096);
                    MemorySegment dst = arena.allocate(len, 4096);
                    boolean allData = true;
                    for (long c = off / CS; c <= (off + len - 1) / CS; c++) allData &= model[(int) c] == State.DATA;
                    boolean ok = img.planRead(off, dst, plan);
                    if (!allData) assertFalse(ok, "planned a read of " + off + "+" + len + " that touches a cluster without data");
                    MemorySegment want = arena.allocate(len, 4096);
                    img.read(off, want);
                    if (!ok) {
                        notPlanned++;
                        continue;
                    }
                    planned++;
                    try {
                        assertTrue(plan.fd() >= 0);
                        assertEquals(len, LibC.pread(plan.fd(), dst, len, plan.fileOffset()), "pread of the plan");
                    } finally {
                        plan.release();
                    }
                    assertEquals(-1, want.mismatch(dst), "planned read of " + off + "+" + len + " differs from read()");
                }
                assertTrue(planned > 100, "planned reads: " + planned);
                assertTrue(notPlanned > 100, "reads left to read(): " + notPlanned);
                // After every release nothing is held: an exclusive operation goes through at once.
                img.changeRefcountWidth(16);
            }
        }
    }

    @Test
    void aPlanHoldsTheImageUntilReleasedFromAnotherThread() throws Exception {
        Path p = dir.resolve("held.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(CS));
        try (Arena arena = Arena.ofShared()) {
            Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheMode(CacheMode.NONE));
            img.write(0, TestImages.pattern(CS, 7));
            FilePlan plan = new FilePlan();
            MemorySegment dst = arena.allocate(4096, 4096);
            assertTrue(img.planRead(4096, dst, plan));
            assertFalse(img.planRead(-4096, dst, plan), "out of range");
            CountDownLatch closed = new CountDownLatch(1);
            AtomicReference<Throwable> err = new AtomicReference<>();
            Thread closer = Thread.ofPlatform().start(() -> {
                try {
                    img.close();
                } catch (Throwable t) {
                    err.set(t);
                }
                closed.countDown();
            });
            assertFalse(closed.await(300, TimeUnit.MILLISECONDS), "close went through while a planned read was held");
            Thread releaser = Thread.ofPlatform().start(plan::release); // as the ring thread does
            releaser.join();
            assertTrue(closed.await(10, TimeUnit.SECONDS), "close did not go through after the release");
            closer.join();
            assertNull(err.get());
            plan.release(); // a second release does nothing
            assertFalse(img.planRead(4096, dst, plan), "a closed image plans nothing");
        }
    }
}
