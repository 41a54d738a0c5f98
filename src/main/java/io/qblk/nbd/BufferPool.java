package io.qblk.nbd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.ArrayBlockingQueue;

/**
 * Reusable native I/O buffers in power-of-two size classes (4 KiB .. {@link NbdProtocol#MAX_PAYLOAD}),
 * 4 KiB aligned. Requests borrow a buffer for their payload and give it back when the reply is
 * sent, so a steady stream of requests allocates nothing. Idle buffers are bounded (per class and
 * {@link #MAX_IDLE_BYTES} in all); extra buffers are left to the garbage collector. How much is
 * borrowed at once is bounded by the server's {@link ByteBudget}, not here.
 */
public final class BufferPool {
    private static final int MIN_SHIFT = 12;
    private static final int MAX_SHIFT = 25;
    private static final long IDLE_BYTES_PER_CLASS = 64L << 20;
    private static final int MAX_IDLE_PER_CLASS = 256;
    /** Idle buffers kept over all classes. */
    static final long MAX_IDLE_BYTES = 64L << 20;

    private final ArrayBlockingQueue<Buffer>[] idle;
    private final java.util.concurrent.atomic.AtomicLong idleBytes = new java.util.concurrent.atomic.AtomicLong();

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
        int c = sizeClass(length);
        Buffer b = idle[c].poll();
        if (b != null) idleBytes.addAndGet(-(1L << (c + MIN_SHIFT)));
        else b = new Buffer(c);
        b.length = length;
        return b;
    }

    /** Native bytes a buffer of {@code length} usable bytes occupies (its power-of-two class). */
    static long classBytes(int length) {
        return 1L << (sizeClass(length) + MIN_SHIFT);
    }

    private static int sizeClass(int length) {
        if (length <= 0 || length > NbdProtocol.MAX_PAYLOAD) throw new IllegalArgumentException("buffer length " + length);
        return Math.max(MIN_SHIFT, 32 - Integer.numberOfLeadingZeros(length - 1)) - MIN_SHIFT;
    }

    public void release(Buffer b) {
        if (b == null) return;
        long size = 1L << (b.sizeClass + MIN_SHIFT);
        if (idleBytes.addAndGet(size) > MAX_IDLE_BYTES || !idle[b.sizeClass].offer(b)) idleBytes.addAndGet(-size);
    }

    /** Bytes held by idle buffers. */
    long idleBytes() {
        return idleBytes.get();
    }
}
