package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * An in-memory file that remembers which writes are durable (before the last datasync) and which
 * are not, and can produce the file a power loss might leave: the durable state plus any subset of
 * the later writes, applied in any order. Can also fail the n-th write or datasync.
 */
final class CrashBackend implements IoBackend {
    private byte[] current = new byte[0];
    private byte[] durable = new byte[0];
    private long length, durableLength;
    private final List<Object[]> pending = new ArrayList<>(); // {Long offset, byte[] data}
    int writes, syncs;
    int failWriteAt = -1, failSyncAt = -1;

    private static byte[] grow(byte[] b, long len) {
        if (len <= b.length) return b;
        return Arrays.copyOf(b, (int) Math.max(len, b.length * 2L));
    }

    @Override
    public synchronized void read(long offset, MemorySegment dst) {
        dst.fill((byte) 0);
        long n = Math.max(0, Math.min(dst.byteSize(), length - offset));
        if (n > 0) MemorySegment.copy(current, (int) offset, dst, ValueLayout.JAVA_BYTE, 0, (int) n);
    }

    @Override
    public synchronized void write(long offset, MemorySegment src) throws IOException {
        if (++writes == failWriteAt) throw new IOException("injected write failure #" + writes);
        byte[] data = src.toArray(ValueLayout.JAVA_BYTE);
        current = grow(current, offset + data.length);
        System.arraycopy(data, 0, current, (int) offset, data.length);
        length = Math.max(length, offset + data.length);
        pending.add(new Object[] {offset, data});
    }

    @Override
    public synchronized void datasync() throws IOException {
        if (++syncs == failSyncAt) throw new IOException("injected datasync failure #" + syncs);
        durable = grow(durable, length);
        for (Object[] w : pending) {
            byte[] d = (byte[]) w[1];
            System.arraycopy(d, 0, durable, (int) (long) (Long) w[0], d.length);
        }
        durableLength = length;
        pending.clear();
    }

    /** The file after a power loss now: durable state plus a random subset of unsynced writes in random order. */
    synchronized byte[] crashImage(Random r) {
        List<Object[]> ws = new ArrayList<>(pending);
        java.util.Collections.shuffle(ws, r);
        long len = durableLength;
        byte[] out = Arrays.copyOf(durable, (int) Math.max(durableLength, length));
        for (Object[] w : ws) {
            if (!r.nextBoolean()) continue;
            byte[] d = (byte[]) w[1];
            long off = (Long) w[0];
            // a write may also land partly: whole 512-byte sectors only
            int upTo = r.nextInt(4) == 0 ? (r.nextInt(d.length / 512 + 1) * 512) : d.length;
            System.arraycopy(d, 0, out, (int) off, Math.min(upTo, d.length));
            len = Math.max(len, off + d.length);
        }
        return Arrays.copyOf(out, (int) len);
    }

    synchronized int pendingWrites() { return pending.size(); }

    @Override public synchronized long size() { return length; }
    @Override public synchronized void truncate(long l) {
        current = grow(current, l);
        if (l < length) Arrays.fill(current, (int) l, (int) length, (byte) 0);
        length = l;
    }
    @Override public void allocate(long offset, long len) { if (offset + len > length) truncate(offset + len); }
    @Override public synchronized void punchHole(long offset, long len) {
        long end = Math.min(length, offset + len);
        if (end > offset) write0(offset, new byte[(int) (end - offset)]);
    }
    private void write0(long off, byte[] d) {
        System.arraycopy(d, 0, current, (int) off, d.length);
        pending.add(new Object[] {off, d});
    }
    @Override public boolean readOnly() { return false; }
    @Override public void close() {}
    @Override public String toString() { return "crash-backend"; }
}
