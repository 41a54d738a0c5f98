package io.qblk.uring;

/**
 * io_uring operation codes (enum io_uring_op in include/uapi/linux/io_uring.h). The numbering is ABI:
 * values never change between kernels, new operations are only appended.
 */
public final class Opcode {
    public static final int NOP = 0;
    public static final int READV = 1;
    public static final int WRITEV = 2;
    public static final int FSYNC = 3;
    public static final int READ_FIXED = 4;
    public static final int WRITE_FIXED = 5;
    public static final int POLL_ADD = 6;
    public static final int POLL_REMOVE = 7;
    public static final int SYNC_FILE_RANGE = 8;
    public static final int TIMEOUT = 11;
    public static final int ASYNC_CANCEL = 14;
    public static final int FALLOCATE = 17;
    public static final int READ = 22;
    /** recv(2) on a socket: addr = buffer, len = its length, msg_flags in the op flags; waits for data. */
    public static final int RECV = 27;
    public static final int WRITE = 23;
    /** Passthrough command to the file's driver (ublk, NVMe); kernel 5.19+. */
    public static final int URING_CMD = 46;

    private Opcode() {}

    public static String name(int opcode) {
        return switch (opcode) {
            case NOP -> "NOP"; case READV -> "READV"; case WRITEV -> "WRITEV"; case FSYNC -> "FSYNC";
            case READ_FIXED -> "READ_FIXED"; case WRITE_FIXED -> "WRITE_FIXED"; case POLL_ADD -> "POLL_ADD";
            case POLL_REMOVE -> "POLL_REMOVE"; case SYNC_FILE_RANGE -> "SYNC_FILE_RANGE";
            case TIMEOUT -> "TIMEOUT"; case ASYNC_CANCEL -> "ASYNC_CANCEL"; case FALLOCATE -> "FALLOCATE";
            case READ -> "READ"; case RECV -> "RECV"; case WRITE -> "WRITE"; case URING_CMD -> "URING_CMD";
            default -> "opcode " + opcode;
        };
    }
}
