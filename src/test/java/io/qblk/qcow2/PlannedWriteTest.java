package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.CacheMode;
import io.qblk.io.FilePlan;
import io.qblk.io.LibC;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Qcow2Image#planWrite}, what a ublk tag links to its commit (docs/ordering.md W2): a plan
 * exists only when the request is one run of allocated, host-contiguous COPIED clusters; writing
 * the planned descriptor at the planned offset changes exactly what {@link Qcow2Image#write} would;
 * and the image is clean afterwards (no allocation, nothing leaked).
 */
@Timeout(120)
class PlannedWriteTest {
    static final int CS = 65536;
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    @Test
    void aPlanExistsOnlyForAllocatedRunsAndWritesWhatWriteWrites() throws Exception {
        for (MetadataWrite mode : new MetadataWrite[] {MetadataWrite.WRITEBACK, MetadataWrite.WRITETHROUGH}) {
            for (CacheMode cache : new CacheMode[] {CacheMode.NONE, CacheMode.WRITEBACK}) {
                Path p = dir.resolve("img-" + mode + "-" + cache + ".qcow2");
                Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(CS));
                SplittableRandom rnd = new SplittableRandom(7);
                boolean[] data = new boolean[(int) (SIZE / CS)];
                byte[] model = new byte[(int) SIZE];
                int planned = 0, notPlanned = 0;
                try (Arena arena = Arena.ofShared();
                     Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheMode(cache).withMetadataWrite(mode))) {
                    // allocate runs of 1-4 clusters, in order: host-contiguous within a run
                    for (int i = 0; i < 150; i++) {
                        int g = rnd.nextInt(data.length - 4), n = 1 + rnd.nextInt(4);
                        MemorySegment src = TestImages.pattern((long) n * CS, rnd.nextInt());
                        img.write((long) g * CS, src);
                        MemorySegment.copy(src, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, model, g * CS, n * CS);
                        for (int k = 0; k < n; k++) data[g + k] = true;
                    }
                    FilePlan plan = new FilePlan();
                    long allocations = img.stats().allocations();
                    for (int i = 0; i < 2000; i++) {
                        long len = 4096L * (1 + rnd.nextInt(32));
                        long off = 4096L * rnd.nextLong(SIZE / 4096 - len / 4096);
                        boolean allData = true;
                        for (long c = off / CS; c <= (off + len - 1) / CS; c++) allData &= data[(int) c];
                        MemorySegment src = TestImages.pattern(len, rnd.nextInt());
                        MemorySegment.copy(src, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, model, (int) off, (int) len);
                        if (!allData) {
                            assertFalse(img.planWrite(off, src, plan), "planned a write of " + off + "+" + len + " that touches an unallocated cluster");
                            img.write(off, src);
                            for (long c = off / CS; c <= (off + len - 1) / CS; c++) data[(int) c] = true;
                            allocations = img.stats().allocations();
                            notPlanned++;
                            continue;
                        }
                        MemorySegment buf = arena.allocate(len, 4096);
                        buf.copyFrom(src);
                        if (!img.planWrite(off, buf, plan)) {
                            img.write(off, buf); // not contiguous on the host
                            notPlanned++;
                            continue;
                        }
                        planned++;
                        try {
                            assertTrue(plan.fd() >= 0);
                            assertEquals(len, LibC.pwrite(plan.fd(), buf, len, plan.fileOffset()), "pwrite of the plan");
                        } finally {
                            plan.release();
                        }
                        assertEquals(allocations, img.stats().allocations(), "a planned write allocates nothing");
                    }
                    assertTrue(planned > 300, mode + " " + cache + ": only " + planned + " planned (" + notPlanned + " not)");
                    assertEquals(planned, img.stats().plannedWrites());
                    img.flush();
                    MemorySegment all = arena.allocate(SIZE, 4096);
                    img.read(0, all);
                    assertEquals(-1, MemorySegment.ofArray(model).mismatch(all), mode + " " + cache + ": the image reads what was written");
                }
                try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
                    CheckReport r = img.check(RepairMode.NONE);
                    assertEquals(0, r.corruptions(), r.toString());
                    assertEquals(0, r.leaks(), r.toString());
                }
            }
        }
    }

    /**
     * W2: the kernel may acknowledge a linked write before its completion reaches the engine, so a
     * flush while a planned write is in flight (its I/O done, the plan not yet released) must sync,
     * although no completed write was reported since the last sync.
     */
    @Test
    void aFlushWhileAPlannedWriteIsInFlightSyncs() throws Exception {
        Path p = dir.resolve("w2.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(CS).withPreallocation(Preallocation.METADATA));
        try (Arena arena = Arena.ofShared();
             Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH))) {
            img.flush();
            long synced = img.stats().datasyncs();
            img.flush();
            assertEquals(synced, img.stats().datasyncs(), "the control: a flush with nothing written since the last one does not sync");
            MemorySegment buf = arena.allocate(4096, 4096);
            buf.copyFrom(TestImages.pattern(4096, 5));
            FilePlan plan = new FilePlan();
            assertTrue(img.planWrite(3 * CS + 4096, buf, plan), "a preallocated cluster takes a planned write");
            try {
                assertEquals(4096, LibC.pwrite(plan.fd(), buf, 4096, plan.fileOffset()));
                img.flush(); // the guest's FLUSH after the kernel acknowledged the write
                assertTrue(img.stats().datasyncs() > synced, "a flush with a planned write in flight must sync");
            } finally {
                plan.release();
            }
            long after = img.stats().datasyncs();
            img.flush();
            assertTrue(img.stats().datasyncs() > after, "the release reports a completed write: the next flush syncs it too");
        }
    }
}
