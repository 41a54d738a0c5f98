package io.qblk.faults;

import io.qblk.testing.MemoryBackend;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** Minimal reproductions of the engine bugs the fault-injection suite found (fixed on this branch). */
class EngineFaultRegressionTest {
    static final int CS = 65536;

    static byte[] imageWithOneCluster() throws Exception {
        MemoryBackend m = new MemoryBackend();
        Qcow2Image.create(m, CreateOptions.defaults(4L << 20).withClusterSize(CS));
        try (Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(CS, 4096);
            SectorTags.fill(s, 1, 0);
            img.write(0, s);
        }
        return m.snapshot();
    }

    /** An L2 entry (with OFLAG_COPIED) pointing at the refcount block: a guest write used to overwrite the block in place. */
    @Test
    void guestWriteNeverOverwritesMetadataAnL2EntryPointsTo() throws Exception {
        byte[] img = imageWithOneCluster();
        ByteBuffer b = ByteBuffer.wrap(img);
        long l2 = b.getLong((int) b.getLong(40)) & 0x00fffffffffffe00L;
        long refblock = b.getLong((int) b.getLong(48));
        b.putLong((int) (l2 + 8), refblock | (1L << 63)); // guest cluster 1 -> refcount block
        byte[] before = Arrays.copyOfRange(img, (int) refblock, (int) refblock + CS);
        MemoryBackend m = new MemoryBackend(img);
        try (Qcow2Image q = Qcow2Image.open(m, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(4096, 4096);
            SectorTags.fill(s, 2, CS / 512);
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> q.write(CS, s));
            assertTrue(e.getMessage().contains("refcount block"), e.getMessage());
        } catch (java.io.IOException ignored) {
            // close may report the corrupt image; what matters is the refcount block below
        }
        byte[] after = m.snapshot();
        assertArrayEquals(before, Arrays.copyOfRange(after, (int) refblock, (int) refblock + CS), "refcount block was overwritten by guest data");
    }

    /** A negative refcount-table entry used to pass open and crash check with ArrayIndexOutOfBoundsException. */
    @Test
    void negativeRefcountTableEntryIsAClearError() throws Exception {
        byte[] img = imageWithOneCluster();
        ByteBuffer b = ByteBuffer.wrap(img);
        b.putLong((int) b.getLong(48) + 16, -CS);
        for (boolean ro : new boolean[] {true, false}) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class,
                    () -> Qcow2Image.open(new MemoryBackend(img), OpenOptions.defaults().withReadOnly(ro)).close());
            assertTrue(e.getMessage().contains("refcount table entry 2"), e.getMessage());
        }
    }
}
