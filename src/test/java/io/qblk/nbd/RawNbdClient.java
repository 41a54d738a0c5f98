package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;

/** A hand-written NBD client speaking the wire format byte by byte, for protocol tests. */
final class RawNbdClient implements AutoCloseable {
    final Socket socket;
    final DataInputStream in;
    final DataOutputStream out;
    int handshakeFlags;
    long exportSize;
    int transmissionFlags;

    record OptionReply(int option, int type, byte[] data) {
        String text() { return new String(data, StandardCharsets.UTF_8); }
    }

    /** One reply: simple (structured=false, error) or one structured chunk. */
    record Reply(boolean structured, int flags, int type, long cookie, int error, byte[] payload) {
        boolean done() { return !structured || (flags & REPLY_FLAG_DONE) != 0; }
    }

    RawNbdClient(InetSocketAddress address) throws IOException {
        socket = new Socket();
        socket.connect(address, 5000);
        socket.setSoTimeout(20_000);
        socket.setTcpNoDelay(true);
        in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
        out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream(), 1 << 16));
    }

    /** Reads the server greeting and answers with client flags. */
    RawNbdClient hello(int clientFlags) throws IOException {
        if (in.readLong() != NBDMAGIC) throw new IOException("bad NBDMAGIC");
        if (in.readLong() != IHAVEOPT) throw new IOException("bad IHAVEOPT");
        handshakeFlags = in.readUnsignedShort();
        out.writeInt(clientFlags);
        out.flush();
        return this;
    }

    RawNbdClient hello() throws IOException {
        return hello(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    }

    void option(int option, byte[] data) throws IOException {
        out.writeLong(IHAVEOPT);
        out.writeInt(option);
        out.writeInt(data.length);
        out.write(data);
        out.flush();
    }

    OptionReply optionReply() throws IOException {
        long magic = in.readLong();
        if (magic != OPTION_REPLY_MAGIC) throw new IOException("bad option reply magic " + Long.toHexString(magic));
        int option = in.readInt(), type = in.readInt(), len = in.readInt();
        byte[] d = new byte[len];
        in.readFully(d);
        return new OptionReply(option, type, d);
    }

    static byte[] goData(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length).putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) b.putShort((short) i);
        return b.array();
    }

    static byte[] metaData(String name, String... queries) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        int len = 4 + n.length + 4;
        for (String q : queries) len += 4 + q.getBytes(StandardCharsets.UTF_8).length;
        ByteBuffer b = ByteBuffer.allocate(len).putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) { byte[] x = q.getBytes(StandardCharsets.UTF_8); b.putInt(x.length).put(x); }
        return b.array();
    }

    /** Negotiates (optionally) structured replies and base:allocation, then NBD_OPT_GO. */
    RawNbdClient go(String name, boolean structured, boolean baseAllocation) throws IOException {
        if (structured) {
            option(OPT_STRUCTURED_REPLY, new byte[0]);
            expect(optionReply(), REP_ACK);
            if (baseAllocation) {
                option(OPT_SET_META_CONTEXT, metaData(name, META_BASE_ALLOCATION));
                expect(optionReply(), REP_META_CONTEXT);
                expect(optionReply(), REP_ACK);
            }
        }
        option(OPT_GO, goData(name, INFO_BLOCK_SIZE));
        while (true) {
            OptionReply r = optionReply();
            if (r.type() == REP_ACK) break;
            if (r.type() != REP_INFO) throw new IOException("GO failed: type " + Integer.toHexString(r.type()) + " " + r.text());
            ByteBuffer d = ByteBuffer.wrap(r.data());
            if (d.getShort() == INFO_EXPORT) { exportSize = d.getLong(); transmissionFlags = d.getShort() & 0xffff; }
        }
        return this;
    }

    private static void expect(OptionReply r, int type) throws IOException {
        if (r.type() != type) throw new IOException("expected reply " + type + ", got " + Integer.toHexString(r.type()) + " " + r.text());
    }

    void request(int flags, int type, long cookie, long offset, long length, byte[] payload) throws IOException {
        out.writeInt(REQUEST_MAGIC);
        out.writeShort(flags);
        out.writeShort(type);
        out.writeLong(cookie);
        out.writeLong(offset);
        out.writeInt((int) length);
        if (payload != null) out.write(payload);
        out.flush();
    }

    /** Reads one simple reply (with {@code dataLength} bytes of data when it succeeded) or structured chunk. */
    Reply reply(int dataLength) throws IOException {
        int magic = in.readInt();
        if (magic == SIMPLE_REPLY_MAGIC) {
            int error = in.readInt();
            long cookie = in.readLong();
            byte[] d = new byte[error == 0 ? dataLength : 0];
            in.readFully(d);
            return new Reply(false, 0, 0, cookie, error, d);
        }
        if (magic != STRUCTURED_REPLY_MAGIC) throw new IOException("bad reply magic " + Integer.toHexString(magic));
        int flags = in.readUnsignedShort(), type = in.readUnsignedShort();
        long cookie = in.readLong();
        int len = in.readInt();
        byte[] d = new byte[len];
        in.readFully(d);
        int error = (type & 0x8000) != 0 ? ByteBuffer.wrap(d).getInt() : 0;
        return new Reply(true, flags, type, cookie, error, d);
    }

    Reply reply() throws IOException {
        return reply(0);
    }

    /** True when the server closes the connection (EOF or reset) within the socket timeout. */
    boolean closedByServer() throws IOException {
        try {
            return in.read() < 0;
        } catch (EOFException e) {
            return true;
        } catch (SocketTimeoutException e) {
            return false;
        } catch (IOException e) {
            return true; // connection reset
        }
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
