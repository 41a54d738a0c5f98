package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.io.IoBackend;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.PowerCut;
import io.qblk.testing.RecordingBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Power loss at every write and sync of a resize (docs/ordering.md R8-R10) and of a header rewrite
 * (R11): every crash image (the durable state plus any subset of the unsynced writes, torn at sector
 * boundaries) opens, has no corruption (leaks allowed), keeps every byte written before, has the old
 * or the new size, and reads zeroes in a grown area.
 */
class ResizeCrashTest {
    @TempDir
    Path dir;

    /** An in-memory file whose writes and barriers feed a {@link PowerCut} (the images a power loss may leave). */
    static final class Disk {
        final PowerCut cut = new PowerCut(new byte[0]);
        final RecordingBackend file = new RecordingBackend(new MemoryBackend(), cut::add);

        byte[] crashImage(Random r) { return cut.crashImage(r); }
        void datasync() throws IOException { file.datasync(); }
    }

    interface CrashCheck {
        void verify(byte[] image, String where) throws IOException;
    }

    /** Crash images taken after every write and datasync of the disk it wraps. */
    static final class Stepping implements IoBackend {
        final Disk be;
        final Random r;
        final List<byte[]> crashes = new ArrayList<>();
        /** When set, each crash image goes here as it is taken instead of into {@link #crashes} (large images). */
        CrashCheck check;
        int taken, perStep = 3;
        boolean recording;

        Stepping(Disk be, long seed) {
            this.be = be;
            this.r = new Random(seed);
        }

        private void step() throws IOException {
            if (!recording) return;
            for (int i = 0; i < perStep; i++) {
                byte[] c = be.crashImage(r);
                if (check != null) check.verify(c, "crash image " + taken);
                else crashes.add(c);
                taken++;
            }
        }

        @Override public void read(long o, MemorySegment d) throws IOException { be.file.read(o, d); }
        @Override public void write(long o, MemorySegment s) throws IOException { step(); be.file.write(o, s); step(); }
        @Override public void datasync() throws IOException { be.file.datasync(); step(); }
        @Override public long size() throws IOException { return be.file.size(); }
        @Override public void truncate(long l) throws IOException { be.file.truncate(l); step(); }
        @Override public void allocate(long o, long l) throws IOException { be.file.allocate(o, l); }
        @Override public void punchHole(long o, long l) throws IOException { be.file.punchHole(o, l); step(); }
        @Override public boolean readOnly() { return false; }
        @Override public void close() { }
    }

    private static MemorySegment pattern(int len, int seed) {
        byte[] b = new byte[len];
        new Random(seed).nextBytes(b);
        return MemorySegment.ofArray(b);
    }

    /** A written image in a stepping backend: returns the model of its first {@code size} bytes. */
    private static byte[] populate(Stepping s, long size, int cluster, int version, int refcountBits, boolean fill) throws IOException {
        Qcow2Image.create(s, CreateOptions.defaults(size).withClusterSize(cluster).withVersion(version).withRefcountBits(refcountBits));
        byte[] model = new byte[(int) size];
        Random r = new Random(cluster);
        try (Qcow2Image img = Qcow2Image.open(s, OpenOptions.defaults())) {
            for (int i = 0; i < 12; i++) {
                int len = 512 * (1 + r.nextInt(40));
                long off = (long) r.nextInt((int) (size - len) / 512) * 512;
                MemorySegment p = pattern(len, i);
                img.write(off, p);
                System.arraycopy(p.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, len);
            }
            img.writeZeroes(0, 4096, true);
            java.util.Arrays.fill(model, 0, 4096, (byte) 0);
            // last, the second quarter written in order (so at the end of the file): with small clusters it spans many refcount blocks
            for (long off = size / 4; fill && off < size / 2; off += 65536) {
                MemorySegment p = pattern(65536, (int) (off >> 16) + 100);
                img.write(off, p);
                System.arraycopy(p.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, 65536);
            }
        }
        return model;
    }

    private byte[] readAll(Qcow2Image img, long len) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(len);
            img.read(0, s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private void verify(byte[] file, byte[] model, long oldSize, long newSize, String where) throws IOException {
        Path p = dir.resolve("crash.qcow2");
        Files.write(p, file);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(BackingPolicy.NOT_OPENED))) {
            CheckReport rep = img.check(RepairMode.NONE);
            assertEquals(0, rep.corruptions(), where + ": " + rep.messages());
            long size = img.virtualSize();
            assertTrue(size == oldSize || size == newSize, where + ": size " + size);
            long keep = Math.min(oldSize, newSize);
            byte[] data = readAll(img, size);
            assertArrayEquals(java.util.Arrays.copyOf(model, (int) keep), java.util.Arrays.copyOf(data, (int) keep), where + ": data");
            for (long i = keep; i < size; i++) {
                // grown: zeroes; cut off (crash before the size changed): the old byte or a discarded zero
                boolean ok = data[(int) i] == 0 || (newSize < oldSize && data[(int) i] == model[(int) i]);
                if (!ok) throw new AssertionError(where + ": byte " + i + " past the kept size is " + data[(int) i]);
            }
        } finally {
            Files.delete(p);
        }
    }

    @ParameterizedTest(name = "v{3} cluster {2} refcount bits {4}: {0} -> {1}")
    @CsvSource({
            "1048576, 8388608, 512, 3, 16",     // the L1 table moves (512-byte clusters: 32 KiB per L1 entry)
            "1048576, 67108864, 4096, 2, 16",   // moves, version 2
            "1048576, 3145728, 65536, 3, 16",   // within the L1 table's reach: only the size field
            "4194304, 1048576, 4096, 3, 16",    // shrink
            "4194304, 1049088, 512, 2, 16",     // shrink to an unaligned size, version 2
            "4194304, 65536, 512, 3, 16",       // shrink past many L2 tables: they are freed, so are the refcount blocks (R16), the file is cut (R14)
            "4194304, 65536, 512, 3, 64",       // the same with a grown refcount table: blocks counted by other blocks leave too (R16, R4)
            "4194304, 1572864, 512, 3, 8"})     // 8-bit refcounts
    void crashAnywhereDuringResize(long oldSize, long newSize, int cluster, int version, int refcountBits) throws Exception {
        Stepping s = new Stepping(new Disk(), oldSize ^ newSize);
        byte[] model = populate(s, oldSize, cluster, version, refcountBits, cluster == 512 && newSize < oldSize);
        s.be.datasync();
        long fileBefore = s.size();
        int blocksBefore = refblocks(s.be.crashImage(new Random(2)))[0];
        s.check = (image, where) -> verify(image, model, oldSize, newSize, where);
        if (cluster == 512 && newSize < oldSize) s.perStep = 1; // hundreds of metadata writes: one crash image each
        s.recording = true;
        try (Qcow2Image img = Qcow2Image.open(s, OpenOptions.defaults())) {
            img.resize(newSize);
        }
        s.recording = false;
        if (newSize < oldSize) {
            // R14: the file ends after its last cluster in use (qemu's length after the same shrink)
            assertTrue(s.size() < fileBefore, "file not cut: " + fileBefore + " -> " + s.size());
            try (Qcow2Image img = Qcow2Image.open(s, OpenOptions.defaults().withReadOnly(true))) {
                assertEquals(s.size(), img.check(RepairMode.NONE).imageEndOffset(), "image end offset");
            }
            // R16: no refcount block that counts nothing (but itself) is left in the table, none past the end
            int[] after = refblocks(s.be.crashImage(new Random(2)));
            assertEquals(0, after[2], "refcount blocks past the end of the file");
            // one pass, as qemu's: a block that counted only a dropped block (a grown table's blocks
            // are counted by others) stays, counting itself; without a grown table none is left
            if (refcountBits != 64) assertEquals(0, after[1], "refcount blocks that count nothing but themselves");
            if (cluster == 512) assertTrue(after[0] < blocksBefore, "no refcount block left the table: " + blocksBefore + " -> " + after[0]);
        }
        assertTrue(s.taken >= 6, "crash points: " + s.taken);
        // and the final state: the new size, still readable and writable after reopening
        verify(s.be.crashImage(new Random(1)), model, newSize, newSize, "after resize");
        try (Qcow2Image img = Qcow2Image.open(s, OpenOptions.defaults())) {
            assertEquals(newSize, img.virtualSize());
            img.write(newSize - 512, pattern(512, 99));
            img.flush();
            assertEquals(0, img.check(RepairMode.NONE).corruptions());
        }
    }

    /**
     * Of the refcount blocks of {@code image}: how many the table names, how many of those count no
     * cluster but their own (R16 drops them), and how many lie past the end of the file (R14).
     */
    private static int[] refblocks(byte[] image) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(image);
        int clusterBits = b.getInt(20), order = b.getInt(4) >= 3 ? b.getInt(96) : 4;
        long tableOffset = b.getLong(48);
        int cs = 1 << clusterBits, rbBits = clusterBits + 3 - order, entries = b.getInt(56) * cs / 8;
        int named = 0, empty = 0, past = 0;
        for (int bi = 0; bi < entries; bi++) {
            long off = b.getLong((int) tableOffset + bi * 8) & ~511L;
            if (off == 0) continue;
            named++;
            if (off + cs > image.length) {
                past++;
                continue;
            }
            CachedTable t = CachedTable.refblock(off, MemorySegment.ofArray(java.util.Arrays.copyOfRange(image, (int) off, (int) off + cs)), cs);
            long self = off >>> clusterBits;
            boolean counts = false;
            for (int slot = 0; slot < 1 << rbBits && !counts; slot++)
                counts = t.refcount(slot, order) != 0 && !((self >>> rbBits) == bi && (self & ((1L << rbBits) - 1)) == slot);
            if (!counts) empty++;
        }
        return new int[] {named, empty, past};
    }

    @Test
    void crashAnywhereDuringHeaderRewrite() throws Exception {
        Stepping s = new Stepping(new Disk(), 7);
        CreateOptions co = CreateOptions.defaults(1L << 20).withClusterSize(65536).withBacking("some/old-backing-name.qcow2", "qcow2");
        Qcow2Image.create(s, co);
        s.be.datasync();
        s.recording = true;
        HeaderRewrite.of(s).backing("new-base.raw", "raw").write();
        HeaderRewrite.of(s).version(2).write();
        HeaderRewrite.of(s).backing(null, null).version(3).lazyRefcounts(true).write();
        s.recording = false;
        assertTrue(s.crashes.size() >= 9);
        for (byte[] c : s.crashes) {
            Path p = dir.resolve("h.qcow2");
            Files.write(p, c);
            try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(BackingPolicy.NOT_OPENED))) {
                ImageInfo info = img.info();
                String b = info.backingFilename();
                assertTrue(b == null || b.equals("some/old-backing-name.qcow2") || b.equals("new-base.raw"), b);
                if (b != null) assertEquals(b.endsWith(".raw") ? "raw" : "qcow2", info.backingFormat());
                assertEquals(0, img.check(RepairMode.NONE).corruptions());
            }
            Files.delete(p);
        }
        Path p = dir.resolve("final.qcow2");
        Files.write(p, s.be.crashImage(new Random(3)));
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            ImageInfo info = img.info();
            assertEquals(null, info.backingFilename());
            assertEquals("1.1", info.compat());
            assertTrue(info.lazyRefcounts());
        }
    }
}
