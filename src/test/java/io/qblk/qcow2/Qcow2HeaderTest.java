package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every header rejection: a clear Qcow2Exception and not one byte of the file changed. */
class Qcow2HeaderTest {
    @TempDir
    Path dir;

    private Path fresh(String name, int version) throws IOException {
        Path p = dir.resolve(name);
        Qcow2Image.create(p, CreateOptions.defaults(1L << 30).withVersion(version));
        return p;
    }

    private static void patch(Path p, Consumer<ByteBuffer> change) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            byte[] b = new byte[65536];
            f.readFully(b, 0, (int) Math.min(65536, f.length()));
            ByteBuffer bb = ByteBuffer.wrap(b);
            change.accept(bb);
            f.seek(0);
            f.write(b, 0, (int) Math.min(65536, f.length()));
        }
    }

    private void rejects(String expect, int version, Consumer<ByteBuffer> change) throws Exception {
        Path p = fresh("bad-" + Math.abs(expect.hashCode()) + "-v" + version + ".qcow2", version);
        patch(p, change);
        byte[] before = Files.readAllBytes(p);
        for (boolean ro : new boolean[] {false, true}) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(ro)).close());
            assertTrue(e.getMessage().contains(expect), "message '" + e.getMessage() + "' should mention '" + expect + "'");
            assertFalse(e.getMessage().contains("\n"), "one line");
        }
        assertArrayEquals(before, Files.readAllBytes(p), "a rejected image must not be modified");
    }

    @Test void badMagic() throws Exception { rejects("bad magic", 3, b -> b.putInt(0, 0x12345678)); }
    @Test void badVersion() throws Exception { rejects("unsupported qcow2 version 4", 3, b -> b.putInt(4, 4)); }
    @Test void clusterBitsTooSmall() throws Exception { rejects("cluster_bits 8", 3, b -> b.putInt(20, 8)); }
    @Test void clusterBitsTooLarge() throws Exception { rejects("cluster_bits 22", 3, b -> b.putInt(20, 22)); }
    @Test void negativeSize() throws Exception { rejects("bad virtual size", 3, b -> b.putLong(24, -512)); }
    @Test void sizeBeyondL1() throws Exception { rejects("L1 table too small", 3, b -> b.putLong(24, 1L << 45)); }
    @Test void l1SizeOverLimit() throws Exception { rejects("bad l1_size", 3, b -> b.putInt(36, 5_000_000)); }
    @Test void l1Misaligned() throws Exception { rejects("L1 table offset", 3, b -> b.putLong(40, 3 * 65536 + 8)); }
    @Test void l1PastEof() throws Exception { rejects("past the end of the file", 3, b -> b.putLong(40, 1L << 40)); }
    @Test void l1OverlapsRefcountTable() throws Exception { rejects("overlaps the refcount table", 3, b -> b.putLong(40, 65536)); }
    @Test void refcountTableZeroClusters() throws Exception { rejects("bad refcount_table_clusters", 3, b -> b.putInt(56, 0)); }
    @Test void refcountTableMisaligned() throws Exception { rejects("refcount table offset", 3, b -> b.putLong(48, 65536 + 512)); }
    @Test void refcountOrder() throws Exception { rejects("bad refcount_order 7", 3, b -> b.putInt(96, 7)); }
    @Test void headerLength() throws Exception { rejects("bad header_length", 3, b -> b.putInt(100, 100)); }
    @Test void unknownIncompatibleBit() throws Exception { rejects("unsupported incompatible qcow2 feature: bit 5", 3, b -> b.putLong(72, 1L << 5)); }
    @Test void unknownIncompatibleBitNamedByFeatureTable() throws Exception {
        rejects("unsupported incompatible qcow2 feature: shiny new thing (bit 5)", 3, b -> {
            int entry = 112 + 8; // first feature table entry of our images
            b.put(entry, (byte) 0).put(entry + 1, (byte) 5);
            byte[] name = new byte[46];
            System.arraycopy("shiny new thing".getBytes(), 0, name, 0, 15);
            b.put(entry + 2, name);
            b.putLong(72, 1L << 5);
        });
    }
    @Test void externalDataFile() throws Exception { rejects("external data file", 3, b -> b.putLong(72, 1L << 2)); }
    @Test void compressionTypeBitWithZlib() throws Exception { rejects("compression type zlib with the compression type feature bit set", 3, b -> b.putLong(72, 1L << 3)); }
    @Test void zstdWithoutItsBit() throws Exception { rejects("compression type zstd with the compression type feature bit clear", 3, b -> b.put(104, (byte) 1)); }
    @Test void unknownCompressionType() throws Exception { rejects("compression type 2 (only zlib and zstd)", 3, b -> { b.put(104, (byte) 2); b.putLong(72, 1L << 3); }); }
    @Test void extendedL2SmallClusters() throws Exception { rejects("extended L2 entries need a cluster size of at least 16k", 3, b -> { b.putInt(20, 13); b.putLong(72, 1L << 4); }); }
    @Test void aesEncryption() throws Exception { rejects("Parameter 'encrypt.key-secret' is required for cipher", 3, b -> b.putInt(32, 1)); }
    @Test void luksEncryption() throws Exception { rejects("LUKS encryption without its full disk encryption header extension", 2, b -> b.putInt(32, 2)); }
    @Test void backingNameTooLong() throws Exception { rejects("bad backing_file_size", 3, b -> { b.putLong(8, 1024); b.putInt(16, 2000); }); }
    @Test void backingNameOutsideCluster() throws Exception { rejects("outside the header cluster", 3, b -> { b.putLong(8, 65530); b.putInt(16, 100); }); }
    @Test void missingBackingFile() throws Exception {
        rejects("backing file nothere.img not found", 3, b -> { b.put(1024, "nothere.img".getBytes()); b.putLong(8, 1024); b.putInt(16, 11); });
    }
    @Test void extensionRunsPastCluster() throws Exception { rejects("runs past the first cluster", 3, b -> b.putInt(116, 70000)); }
    @Test void snapshotTableMisaligned() throws Exception { rejects("snapshot table offset", 3, b -> { b.putInt(60, 1); b.putLong(64, 1000); }); }
    @Test void v2RefusesUnknownVersionFields() throws Exception { rejects("cluster_bits 30", 2, b -> b.putInt(20, 30)); }

    @Test
    void tooSmallFile() throws Exception {
        Path p = dir.resolve("tiny");
        Files.write(p, new byte[10]);
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(p, OpenOptions.defaults()));
        assertTrue(e.getMessage().contains("only 10 bytes"), e.getMessage());
        assertArrayEquals(new byte[10], Files.readAllBytes(p));
    }

    /**
     * Issue 16: an open that only reads never writes the file, even when it is a read-write open
     * (qblk io -c "read ..." opens read-write, as qemu-io does): unknown autoclear bits are cleared
     * before the first change, not at open.
     */
    @Test
    void openThatOnlyReadsLeavesAutoclearBitsAndFileUntouched() throws Exception {
        Path p = fresh("ac.qcow2", 3);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            img.write(0, filled(4096, 5));
        }
        patch(p, b -> b.putLong(88, 0x4000_0000_0000_0000L)); // an unknown autoclear bit
        byte[] before = Files.readAllBytes(p);
        java.nio.file.attribute.FileTime old = java.nio.file.attribute.FileTime.fromMillis(1_000_000_000_000L);
        Files.setLastModifiedTime(p, old);
        for (boolean readOnly : new boolean[] {true, false}) {
            try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(readOnly))) {
                assertArrayEquals(filled(4096, 5).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), read(img, 0, 4096));
                img.map(0, img.virtualSize());
                img.info();
                img.check(RepairMode.NONE);
                img.flush();
            }
            assertArrayEquals(before, Files.readAllBytes(p), "readOnly=" + readOnly + ": an open that only reads changed the file");
            assertEquals(old, Files.getLastModifiedTime(p), "readOnly=" + readOnly + ": an open that only reads touched the file");
        }
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            img.writeZeroes(65536, 65536, false);
        }
        assertEquals(0, ByteBuffer.wrap(Files.readAllBytes(p)).getLong(88), "the first change clears the autoclear bits");
        assertQemuClean(p);
    }

    @Test
    void unknownExtensionIsSkippedAndAutoclearClearedOnWrite() throws Exception {
        Path p = fresh("ext.qcow2", 3);
        // after header (112) + feature table (8 + 8 * 48): insert an unknown extension, then the end marker
        patch(p, b -> {
            int pos = 112 + 8 + 8 * 48;
            b.putInt(pos, 0x12345678).putInt(pos + 4, 5).put(pos + 8, (byte) 1).putInt(pos + 16, 0).putInt(pos + 20, 0);
            b.putLong(88, 0x8000_0000_0000_0001L); // bitmaps bit + an unknown autoclear bit
        });
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            assertEquals(1L << 30, img.virtualSize());
        }
        assertEquals(0x8000_0000_0000_0001L, ByteBuffer.wrap(Files.readAllBytes(p)).getLong(88), "read-only open leaves autoclear alone");
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            img.write(0, filled(4096, 1));
        }
        assertEquals(0, ByteBuffer.wrap(Files.readAllBytes(p)).getLong(88), "write open clears autoclear bits");
        assertQemuClean(p);
    }

    @Test
    void corruptBitMeansReadOnly() throws Exception {
        Path p = fresh("corrupt.qcow2", 3);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            img.write(0, filled(4096, 7));
        }
        patch(p, b -> b.putLong(72, b.getLong(72) | 2));
        byte[] before = Files.readAllBytes(p);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            assertTrue(img.readOnly());
            assertTrue(img.info().corrupt());
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> img.write(0, filled(512, 1)));
            assertTrue(e.getMessage().contains("marked corrupt"), e.getMessage());
            assertEquals(7, read(img, 0, 1)[0]);
        }
        assertArrayEquals(before, Files.readAllBytes(p));
        // check with full repair finds nothing wrong and clears the bit
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            CheckReport r = img.check(RepairMode.ALL);
            assertTrue(r.clean(), r.toString());
            assertFalse(img.readOnly());
            img.write(0, filled(512, 9));
        }
        assertQemuClean(p);
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3})
    void createRejectsBadOptions(int version) {
        assertThrows(Qcow2Exception.class, () -> Qcow2Image.create(dir.resolve("a"), CreateOptions.defaults(1 << 20).withVersion(version).withClusterSize(1000)));
        assertThrows(Qcow2Exception.class, () -> Qcow2Image.create(dir.resolve("b"), CreateOptions.defaults(1 << 20).withVersion(version).withRefcountBits(3)));
        assertThrows(Qcow2Exception.class, () -> Qcow2Image.create(dir.resolve("c"), CreateOptions.defaults(1 << 20).withVersion(version).withClusterSize(4 << 20)));
        if (version == 2) {
            assertThrows(Qcow2Exception.class, () -> Qcow2Image.create(dir.resolve("d"), CreateOptions.defaults(1 << 20).withVersion(2).withRefcountBits(8)));
            assertThrows(Qcow2Exception.class, () -> Qcow2Image.create(dir.resolve("e"), CreateOptions.defaults(1 << 20).withVersion(2).withLazyRefcounts(true)));
        }
        assertFalse(Files.exists(dir.resolve("a")));
    }

    @Test
    void createRefusesExistingFile() throws Exception {
        Path p = fresh("exists.qcow2", 3);
        byte[] before = Files.readAllBytes(p);
        assertThrows(java.nio.file.FileAlreadyExistsException.class, () -> Qcow2Image.create(p, CreateOptions.defaults(1 << 20)));
        assertArrayEquals(before, Files.readAllBytes(p));
        assertTrue(Arrays.equals(before, Files.readAllBytes(p)));
    }
}
