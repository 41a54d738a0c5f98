package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.testing.IoEvent;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.RecordingBackend;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Lazy refcounts (docs/ordering.md L1-L3): a write-through open of an image with the lazy-refcounts
 * bit sets the dirty bit before its first change, its commits leave refcount blocks unwritten, a
 * clean close writes them and clears the bit, and a killed process leaves an image that qemu-img
 * check -r all and qblk's next open repair.
 */
class LazyRefcountsTest {
    @TempDir
    Path dir;

    private static final int CS = 4096, WRITES = 24;

    private Path create(String name, boolean lazy) throws Exception {
        Path p = dir.resolve(name);
        Qcow2Image.create(p, CreateOptions.defaults(64L << 20).withClusterSize(CS).withLazyRefcounts(lazy));
        return p;
    }

    private static boolean dirty(Path p) throws Exception {
        return (ByteBuffer.wrap(Files.readAllBytes(p)).getLong(72) & Qcow2Header.INCOMPAT_DIRTY) != 0;
    }

    private static OpenOptions writeThrough() {
        return OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH);
    }

    /** Allocating writes, one per cluster, 2 clusters apart (each allocates and maps one data cluster). */
    private static void writeAll(Qcow2Image img) throws Exception {
        for (int i = 0; i < WRITES; i++) img.write((long) i * 2 * CS, filled(CS, i + 1));
    }

    private static void assertData(Qcow2Image img) throws Exception {
        for (int i = 0; i < WRITES; i++)
            assertArrayEquals(filled(CS, i + 1).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), read(img, (long) i * 2 * CS, CS), "cluster " + i);
    }

    /**
     * Parity on a qemu-made lazy image: qblk (write-through, lazy) and qemu-io run the same writes on
     * copies; both images end clean and equal. A copy taken while qblk has it open (what kill -9
     * leaves) is dirty with stale refcounts only, and both qemu-img check -r all and qblk's next open
     * repair it with every completed write intact.
     */
    @Test
    void killedWriterLeavesDirtyImageThatQemuAndQblkRepair() throws Exception {
        Path p = dir.resolve("lazy.qcow2");
        Result made = qemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=" + CS, p.toString(), String.valueOf(64L << 20));
        assertEquals(0, made.exit(), made.out());
        Path byQemu = dir.resolve("by-qemu.qcow2");
        Files.copy(p, byQemu);
        StringBuilder cmds = new StringBuilder();
        for (int i = 0; i < WRITES; i++) {
            Result w = qemuIo(byQemu, "write -P " + (i + 1) + " " + ((long) i * 2 * CS) + " " + CS);
            assertEquals(0, w.exit(), w.out());
        }
        assertQemuClean(byQemu);
        Path killed = dir.resolve("killed.qcow2");
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            assertFalse(dirty(p), "an open that has not changed anything leaves the header alone");
            writeAll(img);
            assertTrue(dirty(p), "L1: the dirty bit is on disk once a commit may skip refcounts");
            assertTrue(img.info().dirtyFlag());
            // what a kill -9 leaves: the file as it is now (write-through: every L2 entry is in it)
            Files.copy(p, killed, StandardCopyOption.REPLACE_EXISTING);
        }
        assertFalse(dirty(p), "L2: a clean close clears the dirty bit");
        assertQemuClean(p);
        assertEquals(0, qemuImg("compare", "-f", "qcow2", "-F", "qcow2", p.toString(), byQemu.toString()).exit(), "qblk and qemu-io wrote the same");

        // qemu-img check of the killed image: stale refcounts only (the commits skipped them), as qemu's own lazy images
        Result c = qemuImg("check", "-f", "qcow2", killed.toString());
        assertEquals(2, c.exit(), c.out());
        assertTrue(c.out().contains("refcount=0 reference=1"), c.out());
        for (String l : c.out().lines().filter(l -> l.startsWith("ERROR")).toList())
            assertTrue(l.matches("ERROR (cluster \\d+ refcount=\\d+ reference=\\d+|OFLAG_COPIED (data|L2) cluster: .*refcount=0)"), l);
        // qblk read-only: the same verdict, dirty flag shown, data readable
        try (Qcow2Image ro = Qcow2Image.open(killed, OpenOptions.defaults().withReadOnly(true))) {
            assertTrue(ro.info().dirtyFlag());
            assertTrue(ro.check(RepairMode.NONE).corruptions() > 0, "check without repair reports the stale refcounts, like qemu-img");
            assertData(ro);
        }
        Path qemuRepaired = dir.resolve("qemu-repaired.qcow2");
        Files.copy(killed, qemuRepaired);
        assertEquals(0, qemuImg("check", "-r", "all", "-f", "qcow2", qemuRepaired.toString()).exit());
        assertQemuClean(qemuRepaired);
        // qblk's read-write open repairs it (check ALL), clears the bit, and every completed write is there
        try (Qcow2Image img = Qcow2Image.open(killed, OpenOptions.defaults())) {
            assertFalse(img.info().dirtyFlag());
            assertTrue(img.check(RepairMode.NONE).clean());
            assertData(img);
        }
        assertFalse(dirty(killed));
        assertQemuClean(killed);
        assertEquals(0, qemuImg("compare", "-f", "qcow2", "-F", "qcow2", killed.toString(), qemuRepaired.toString()).exit());
        assertEquals(0, qemuImg("compare", "-f", "qcow2", "-F", "qcow2", killed.toString(), p.toString()).exit());
    }

    @Test
    void onlyWriteThroughOpensOfLazyImagesSetTheDirtyBit() throws Exception {
        Path wb = create("writeback.qcow2", true);
        try (Qcow2Image img = Qcow2Image.open(wb, OpenOptions.defaults())) {
            writeAll(img);
            assertFalse(dirty(wb), "write-back commits nothing, so nothing is lazy");
        }
        Path plain = create("plain.qcow2", false);
        try (Qcow2Image img = Qcow2Image.open(plain, writeThrough())) {
            writeAll(img);
            assertFalse(dirty(plain), "no lazy-refcounts bit, no dirty bit");
            Path copy = dir.resolve("plain-killed.qcow2");
            Files.copy(plain, copy);
            assertQemuLeaksOnly(copy); // no dirty bit needed: exact refcounts but the unused tail reserve (R17)
        }
        assertQemuClean(wb);
        assertQemuClean(plain);
    }

    /**
     * The saving: per allocating write-through request, one metadata write fewer (the refcount block); the syncs stay.
     * Over a backing file, so that every write takes the ordered path (an empty image maps into the R17 tail reserve,
     * whose refcounts were written when it was reserved).
     */
    @Test
    void lazyCommitsSkipTheRefcountBlockWrite() throws Exception {
        long[] writes = new long[2], syncs = new long[2];
        Path base = dir.resolve("base.raw");
        assertEquals(0, qemuImg("create", "-q", "-f", "raw", base.toString(), String.valueOf(64L << 20)).exit());
        for (int lazy = 0; lazy < 2; lazy++) {
            MemoryBackend mem = new MemoryBackend();
            Qcow2Image.create(mem, CreateOptions.defaults(64L << 20).withClusterSize(CS).withLazyRefcounts(lazy == 1).withBacking(base.toString(), "raw"));
            RecordingBackend rec = new RecordingBackend(mem);
            try (Qcow2Image img = Qcow2Image.open(rec, writeThrough())) {
                img.write(0, pattern(CS, 99)); // the first change (dirty bit, first L2 table) out of the count
                int before = rec.logSize();
                long s0 = img.stats().datasyncs();
                writeAll(img);
                writes[lazy] = rec.log().subList(before, rec.logSize()).stream().filter(e -> e.kind() == IoEvent.Kind.WRITE).count();
                syncs[lazy] = img.stats().datasyncs() - s0;
            }
            try (Qcow2Image img = Qcow2Image.open(new MemoryBackend(mem.snapshot()), OpenOptions.defaults().withReadOnly(true))) {
                assertFalse(img.info().dirtyFlag());
                assertTrue(img.check(RepairMode.NONE).clean(), "closed cleanly: refcounts written");
                assertData(img);
            }
        }
        System.out.println("write-through, " + WRITES + " allocating writes: writes " + writes[0] + " -> " + writes[1] + " with lazy refcounts, datasyncs " + syncs[0] + " -> " + syncs[1]);
        // one refcount-block write fewer per commit (give or take a commit whose block another one already wrote)
        assertTrue(writes[0] - writes[1] >= WRITES - 2, "writes " + writes[0] + " -> " + writes[1]);
        assertEquals(syncs[0], syncs[1], "R1 keeps the sync before the L2 write");
        assertTrue(syncs[0] >= WRITES - 1, "one sync per ordered commit (write 0 rewrites the first cluster): " + syncs[0]);
    }
}
