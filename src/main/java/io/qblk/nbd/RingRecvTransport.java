package io.qblk.nbd;

import io.qblk.uring.RingThread;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * Plain transport of a connection on a carrier: receives through the connection's io_uring
 * ({@link RingThread#recv} on a duplicate of the socket's descriptor: completes on the ring thread
 * itself, no poller hop) into native buffers; heap buffers and every send go through the channel
 * (a send that fits the socket buffer never parks).
 */
final class RingRecvTransport implements NbdTls.Transport {
    private final SocketChannel channel;
    private final RingThread ring;
    private final int fd;

    RingRecvTransport(SocketChannel channel, RingThread ring, int fd) {
        this.channel = channel;
        this.ring = ring;
        this.fd = fd;
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (!dst.isDirect()) return channel.read(dst);
        if (!dst.hasRemaining()) return 0;
        int n = ring.recv(fd, MemorySegment.ofBuffer(dst));
        if (n == 0) return -1;
        dst.position(dst.position() + n);
        return n;
    }

    @Override public long write(ByteBuffer[] srcs) throws IOException { return channel.write(srcs); }

    @Override public boolean tls() { return false; }
}
