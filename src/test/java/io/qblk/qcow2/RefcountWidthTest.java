package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.testing.MemoryBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The engine side of amend refcount_bits (docs/ordering.md R15, {@link RefcountWidth}): a chain of
 * width changes keeps the data, the snapshots and a clean check; a refcount the new width cannot
 * hold refuses the change with qemu-img's message before anything is written; the open that changed
 * the width refuses writes; the old structure is released.
 */
class RefcountWidthTest {

    private static byte[] readAll(Qcow2Image img) throws Exception {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(img.virtualSize());
            img.read(0, s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private static MemoryBackend written(int clusterSize, boolean snapshot) throws Exception {
        MemoryBackend mem = new MemoryBackend();
        Qcow2Image.create(mem, CreateOptions.defaults(4L << 20).withClusterSize(clusterSize));
        try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults())) {
            Random r = new Random(clusterSize);
            byte[] b = new byte[3 << 20];
            r.nextBytes(b);
            img.write(0, MemorySegment.ofArray(b));
            if (snapshot) {
                img.createSnapshot("s1");
                img.write(1 << 20, MemorySegment.ofArray(new byte[65536]));
            }
        }
        return mem;
    }

    @Test
    void everyWidthKeepsDataSnapshotsAndACleanImage() throws Exception {
        for (int cs : new int[] {512, 4096, 65536}) {
            MemoryBackend mem = written(cs, true);
            byte[] data, snap;
            try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults().withReadOnly(true))) {
                data = readAll(img);
                snap = new byte[data.length];
                img.readSnapshot("s1", 0, MemorySegment.ofArray(snap));
            }
            for (int bits : new int[] {2, 64, 8, 32, 4, 16}) {
                long tableBefore = java.nio.ByteBuffer.wrap(mem.snapshot()).getLong(48);
                try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults())) {
                    img.changeRefcountWidth(bits);
                    java.io.IOException e = assertThrows(java.io.IOException.class, () -> img.write(0, MemorySegment.ofArray(new byte[512])));
                    assertTrue(e.getMessage().contains("reopen"), e.getMessage());
                }
                String where = cs + "-byte clusters, " + bits + " bits";
                assertTrue(java.nio.ByteBuffer.wrap(mem.snapshot()).getLong(48) != tableBefore, where + ": the table did not move");
                try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults().withReadOnly(true))) {
                    assertEquals(bits, img.info().refcountBits(), where);
                    CheckReport c = img.check(RepairMode.NONE);
                    // the old blocks and table were released: not even leaks
                    assertTrue(c.clean(), where + ": " + c.messages());
                    assertArrayEquals(data, readAll(img), where + ": data");
                    byte[] s = new byte[data.length];
                    img.readSnapshot("s1", 0, MemorySegment.ofArray(s));
                    assertArrayEquals(snap, s, where + ": snapshot");
                }
            }
            // and the image is writable at its new width after a reopen
            try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults())) {
                img.write(3 << 20, MemorySegment.ofArray(new byte[4096]).fill((byte) 7));
                img.flush();
                assertTrue(img.check(RepairMode.NONE).clean());
            }
        }
    }

    @Test
    void aRefcountTheNewWidthCannotHoldRefusesBeforeAnyWrite() throws Exception {
        MemoryBackend mem = written(65536, true);
        byte[] before = mem.snapshot();
        try (Qcow2Image img = Qcow2Image.open(mem, OpenOptions.defaults())) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> img.changeRefcountWidth(1));
            assertArrayEquals(before, mem.snapshot(), "the refused change wrote");
            assertEquals(Qcow2Exception.Kind.INVALID_ARGUMENT, e.kind());
            assertTrue(e.getMessage().matches("Cannot decrease refcount entry width to 1 bits: Cluster at offset 0x[0-9a-f]+ has a refcount of 2"), e.getMessage());
            assertThrows(Qcow2Exception.class, () -> img.checkRefcountsFit(1));
            img.checkRefcountsFit(2);
            // nothing was refused for good: the open still writes
            img.write(0, MemorySegment.ofArray(new byte[512]));
        }
        for (long bad : new long[] {0, 3, 128, -16}) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.checkRefcountWidth(bad, 3));
            assertEquals("Refcount width must be a power of two and may not exceed 64 bits", e.getMessage());
        }
        assertThrows(Qcow2Exception.class, () -> Qcow2Image.checkRefcountWidth(8, 2));
        Qcow2Image.checkRefcountWidth(16, 2);
    }
}
