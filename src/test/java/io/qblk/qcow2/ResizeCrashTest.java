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

    /** Crash images taken after every write and datasync of the disk it wraps. */
    static final class Stepping implements IoBackend {
        final Disk be;
        final Random r;
        final List<byte[]> crashes = new ArrayList<>();
        boolean recording;

        Stepping(Disk be, long seed) {
            this.be = be;
            this.r = new Random(seed);
        }

        private void step() {
            if (!recording) return;
            for (int i = 0; i < 3; i++) crashes.add(be.crashImage(r));
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
    private static byte[] populate(Stepping s, long size, int cluster, int version) throws IOException {
        Qcow2Image.create(s, CreateOptions.defaults(size).withClusterSize(cluster).withVersion(version));
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

    @ParameterizedTest(name = "v{3} cluster {2}: {0} -> {1}")
    @CsvSource({
            "1048576, 8388608, 512, 3",     // the L1 table moves (512-byte clusters: 32 KiB per L1 entry)
            "1048576, 67108864, 4096, 2",   // moves, version 2
            "1048576, 3145728, 65536, 3",   // within the L1 table's reach: only the size field
            "4194304, 1048576, 4096, 3",    // shrink
            "4194304, 1049088, 512, 2",     // shrink to an unaligned size, version 2
            "4194304, 65536, 512, 3"})      // shrink past many L2 tables: they are freed and the file cut (R14)
    void crashAnywhereDuringResize(long oldSize, long newSize, int cluster, int version) throws Exception {
        Stepping s = new Stepping(new Disk(), oldSize ^ newSize);
        byte[] model = populate(s, oldSize, cluster, version);
        s.be.datasync();
        long fileBefore = s.size();
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
        }
        assertTrue(s.crashes.size() >= 6, "crash points: " + s.crashes.size());
        for (int i = 0; i < s.crashes.size(); i++) verify(s.crashes.get(i), model, oldSize, newSize, "crash image " + i);
        // and the final state: the new size, still readable and writable after reopening
        verify(s.be.crashImage(new Random(1)), model, newSize, newSize, "after resize");
        try (Qcow2Image img = Qcow2Image.open(s, OpenOptions.defaults())) {
            assertEquals(newSize, img.virtualSize());
            img.write(newSize - 512, pattern(512, 99));
            img.flush();
            assertEquals(0, img.check(RepairMode.NONE).corruptions());
        }
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
