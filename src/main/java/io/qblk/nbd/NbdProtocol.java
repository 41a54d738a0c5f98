package io.qblk.nbd;

/**
 * Wire constants of the NBD protocol (fixed newstyle handshake, structured replies, metadata
 * contexts), named as in the protocol document (NetworkBlockDevice/nbd doc/proto.md). All fields
 * are big-endian on the wire.
 */
public final class NbdProtocol {
    private NbdProtocol() {}

    // Handshake magics
    public static final long NBDMAGIC = 0x4e42444d41474943L;          // "NBDMAGIC"
    public static final long IHAVEOPT = 0x49484156454F5054L;          // "IHAVEOPT"
    public static final long OPTION_REPLY_MAGIC = 0x0003e889045565a9L;

    // Handshake flags (server) and client flags
    public static final int FLAG_FIXED_NEWSTYLE = 1;
    public static final int FLAG_NO_ZEROES = 1 << 1;
    public static final int FLAG_C_FIXED_NEWSTYLE = 1;
    public static final int FLAG_C_NO_ZEROES = 1 << 1;

    // Options
    public static final int OPT_EXPORT_NAME = 1;
    public static final int OPT_ABORT = 2;
    public static final int OPT_LIST = 3;
    public static final int OPT_STARTTLS = 5;
    public static final int OPT_INFO = 6;
    public static final int OPT_GO = 7;
    public static final int OPT_STRUCTURED_REPLY = 8;
    public static final int OPT_LIST_META_CONTEXT = 9;
    public static final int OPT_SET_META_CONTEXT = 10;

    // Option replies
    public static final int REP_ACK = 1;
    public static final int REP_SERVER = 2;
    public static final int REP_INFO = 3;
    public static final int REP_META_CONTEXT = 4;
    private static final int REP_ERR = 0x80000000;
    public static final int REP_ERR_UNSUP = REP_ERR | 1;
    public static final int REP_ERR_POLICY = REP_ERR | 2;
    public static final int REP_ERR_INVALID = REP_ERR | 3;
    public static final int REP_ERR_PLATFORM = REP_ERR | 4;
    public static final int REP_ERR_TLS_REQD = REP_ERR | 5;
    public static final int REP_ERR_UNKNOWN = REP_ERR | 6;
    public static final int REP_ERR_SHUTDOWN = REP_ERR | 7;
    public static final int REP_ERR_TOO_BIG = REP_ERR | 9;

    // NBD_REP_INFO types
    public static final int INFO_EXPORT = 0;
    public static final int INFO_NAME = 1;
    public static final int INFO_DESCRIPTION = 2;
    public static final int INFO_BLOCK_SIZE = 3;

    // Transmission flags
    public static final int FLAG_HAS_FLAGS = 1;
    public static final int FLAG_READ_ONLY = 1 << 1;
    public static final int FLAG_SEND_FLUSH = 1 << 2;
    public static final int FLAG_SEND_FUA = 1 << 3;
    public static final int FLAG_ROTATIONAL = 1 << 4;
    public static final int FLAG_SEND_TRIM = 1 << 5;
    public static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int FLAG_SEND_DF = 1 << 7;
    public static final int FLAG_CAN_MULTI_CONN = 1 << 8;

    // Requests and replies
    public static final int REQUEST_MAGIC = 0x25609513;
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    public static final int REQUEST_HEADER_SIZE = 28;
    public static final int SIMPLE_REPLY_HEADER_SIZE = 16;
    public static final int STRUCTURED_REPLY_HEADER_SIZE = 20;

    // Commands
    public static final int CMD_READ = 0;
    public static final int CMD_WRITE = 1;
    public static final int CMD_DISC = 2;
    public static final int CMD_FLUSH = 3;
    public static final int CMD_TRIM = 4;
    public static final int CMD_CACHE = 5;
    public static final int CMD_WRITE_ZEROES = 6;
    public static final int CMD_BLOCK_STATUS = 7;

    // Command flags
    public static final int CMD_FLAG_FUA = 1;
    public static final int CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int CMD_FLAG_DF = 1 << 2;
    public static final int CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // Structured reply flags and chunk types
    public static final int REPLY_FLAG_DONE = 1;
    public static final int REPLY_TYPE_NONE = 0;
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int REPLY_TYPE_ERROR = (1 << 15) + 1;
    public static final int REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

    // base:allocation
    public static final String META_BASE_ALLOCATION = "base:allocation";
    public static final int STATE_HOLE = 1;
    public static final int STATE_ZERO = 1 << 1;

    // Error values
    public static final int EPERM = 1;
    public static final int EIO = 5;
    public static final int ENOMEM = 12;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOVERFLOW = 75;
    public static final int ENOTSUP = 95;
    public static final int ESHUTDOWN = 108;

    /**
     * The NBD error code for a Linux errno (from {@link io.qblk.target.TargetErrors#toErrno}): the
     * protocol has a fixed set, so EACCES and EROFS become EPERM, EFBIG and EDQUOT ENOSPC, and any
     * errno outside the set EIO.
     */
    public static int errorCode(int errno) {
        return switch (errno) {
            case io.qblk.io.Errno.EPERM, io.qblk.io.Errno.EACCES, io.qblk.io.Errno.EROFS -> EPERM;
            case io.qblk.io.Errno.ENOSPC, io.qblk.io.Errno.EFBIG, io.qblk.io.Errno.EDQUOT -> ENOSPC;
            case io.qblk.io.Errno.ENOMEM -> ENOMEM;
            case io.qblk.io.Errno.EINVAL -> EINVAL;
            case io.qblk.io.Errno.EOVERFLOW -> EOVERFLOW;
            case io.qblk.io.Errno.EOPNOTSUPP -> ENOTSUP;
            case io.qblk.io.Errno.ESHUTDOWN -> ESHUTDOWN;
            default -> EIO;
        };
    }

    /** Smallest request granule the server accepts (BlockTarget works in 512-byte sectors). */
    public static final int MIN_BLOCK_SIZE = 512;
    public static final int PREFERRED_BLOCK_SIZE = 4096;
    /** Largest READ/WRITE payload accepted (advertised in NBD_INFO_BLOCK_SIZE). */
    public static final int MAX_PAYLOAD = 32 << 20;
}
