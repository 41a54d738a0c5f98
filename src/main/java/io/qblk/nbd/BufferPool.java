package io.qblk.nbd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.ArrayBlockingQueue;

/**
 * Reusable native I/O buffers in power-of-two size classes (4 KiB .. {@link NbdProtocol#MAX_PAYLOAD}),
 * 4 KiB aligned. Requests borrow a buffer for their payload and give it back when the reply is
 * sent, so a steady stream of requests allocates nothing. Each class keeps at most a few idle
 * buffers (bounded by bytes); extra buffers are left to the garbage collector.
 */
public final class BufferPool {
    private static final int MIN_SHIFT = 12;
    private static final int MAX_SHIFT = 25;
    private static final long IDLE_BYTES_PER_CLASS = 64L << 20;
    private static final int MAX_IDLE_PER_CLASS = 256;

    private final ArrayBlockingQueue<Buffer>[] idle;

    /** A borrowed buffer: {@link #segment()} and {@link #byteBuffer()} view the same native memory. */
    public static final class Buffer {
        private final MemorySegment memory;
        private final ByteBuffer bytes;
        private final int sizeClass;
        private int length;

        private Buffer(int sizeClass) {
            this.sizeClass = sizeClass;
            this.memory = Arena.ofAuto().allocate(1L << (sizeClass + MIN_SHIFT), 4096);
            this.bytes = memory.asByteBuffer();
        }

        /** The first {@code length} bytes as a segment (what the target reads or writes). */
        public MemorySegment segment() { return memory.asSlice(0, length); }

        /** The first {@code length} bytes as a buffer positioned at 0 (what the socket reads or writes). */
        public ByteBuffer byteBuffer() { return bytes.clear().limit(length); }

        public int length() { return length; }
    }

    @SuppressWarnings("unchecked")
    public BufferPool() {
        idle = new ArrayBlockingQueue[MAX_SHIFT - MIN_SHIFT + 1];
        for (int c = 0; c < idle.length; c++) {
            long size = 1L << (c + MIN_SHIFT);
            int n = (int) Math.max(1, Math.min(MAX_IDLE_PER_CLASS, IDLE_BYTES_PER_CLASS / size));
            idle[c] = new ArrayBlockingQueue<>(n);
        }
    }

    /** A buffer of exactly {@code length} usable bytes (1 .. MAX_PAYLOAD). */
    public Buffer acquire(int length) {
        if (length <= 0 || length > NbdProtocol.MAX_PAYLOAD) throw new IllegalArgumentException("buffer length " + length);
        int shift = Math.max(MIN_SHIFT, 32 - Integer.numberOfLeadingZeros(length - 1));
        int c = shift - MIN_SHIFT;
        Buffer b = idle[c].poll();
        if (b == null) b = new Buffer(c);
        b.length = length;
        return b;
    }

    public void release(Buffer b) {
        if (b != null) idle[b.sizeClass].offer(b);
    }
}
