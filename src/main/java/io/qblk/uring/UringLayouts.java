package io.qblk.uring;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.SequenceLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.UnionLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The kernel's io_uring ABI structures (include/uapi/linux/io_uring.h, x86_64) as FFM layouts with
 * named fields, and the VarHandles the ring code uses to read and write them.
 *
 * <p>All VarHandles take {@code (MemorySegment segment, long baseOffset)} coordinates, so one handle
 * serves every entry of a ring (base offset = index * entry size) without slicing.
 */
public final class UringLayouts {
    private UringLayouts() {}

    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;

    /** struct io_sqring_offsets (40 bytes). */
    public static final StructLayout SQRING_OFFSETS = MemoryLayout.structLayout(
            U32.withName("head"), U32.withName("tail"), U32.withName("ring_mask"), U32.withName("ring_entries"),
            U32.withName("flags"), U32.withName("dropped"), U32.withName("array"), U32.withName("resv1"),
            U64.withName("resv2")).withName("io_sqring_offsets");

    /** struct io_cqring_offsets (40 bytes). */
    public static final StructLayout CQRING_OFFSETS = MemoryLayout.structLayout(
            U32.withName("head"), U32.withName("tail"), U32.withName("ring_mask"), U32.withName("ring_entries"),
            U32.withName("overflow"), U32.withName("cqes"), U32.withName("flags"), U32.withName("resv1"),
            U64.withName("resv2")).withName("io_cqring_offsets");

    /** struct io_uring_params (120 bytes), passed to io_uring_setup and filled in by the kernel. */
    public static final StructLayout PARAMS = MemoryLayout.structLayout(
            U32.withName("sq_entries"), U32.withName("cq_entries"), U32.withName("flags"),
            U32.withName("sq_thread_cpu"), U32.withName("sq_thread_idle"), U32.withName("features"),
            U32.withName("wq_fd"), MemoryLayout.sequenceLayout(3, U32).withName("resv"),
            SQRING_OFFSETS.withName("sq_off"), CQRING_OFFSETS.withName("cq_off")).withName("io_uring_params");

    /** Size of the command area of a 64-byte SQE (sqe->cmd overlays addr3 and __pad2). */
    public static final int CMD_BYTES = 16;
    /** Size of the command area of a 128-byte SQE (IORING_SETUP_SQE128). */
    public static final int CMD_BYTES_SQE128 = 80;

    private static UnionLayout offUnion() {
        return MemoryLayout.unionLayout(
                U64.withName("off"),
                MemoryLayout.structLayout(U32.withName("cmd_op"), U32.withName("__pad1")).withName("cmd"));
    }

    private static StructLayout sqe(int cmdBytes) {
        return MemoryLayout.structLayout(
                U8.withName("opcode"), U8.withName("flags"), U16.withName("ioprio"), U32.withName("fd"),
                offUnion().withName("off_or_cmd"),
                U64.withName("addr"),
                U32.withName("len"),
                U32.withName("op_flags"),          // rw_flags / fsync_flags / uring_cmd_flags / cancel_flags ...
                U64.withName("user_data"),
                U16.withName("buf_index"),
                U16.withName("personality"),
                U32.withName("file_index"),        // splice_fd_in / file_index / addr_len
                MemoryLayout.unionLayout(
                        MemoryLayout.structLayout(U64.withName("addr3"), U64.withName("__pad2")).withName("tail"),
                        MemoryLayout.sequenceLayout(cmdBytes, U8).withName("cmd")).withName("addr3_or_cmd")
        ).withName("io_uring_sqe");
    }

    /** struct io_uring_sqe (64 bytes). */
    public static final StructLayout SQE = sqe(CMD_BYTES);
    /** struct io_uring_sqe of a ring set up with IORING_SETUP_SQE128 (128 bytes, 80-byte cmd area). */
    public static final StructLayout SQE128 = sqe(CMD_BYTES_SQE128);

    /** Byte offset of the command area (sqe->cmd) inside an SQE. */
    public static final long SQE_CMD_OFFSET = SQE.byteOffset(groupElement("addr3_or_cmd"));

    /** struct io_uring_cqe (16 bytes). */
    public static final StructLayout CQE = MemoryLayout.structLayout(
            U64.withName("user_data"), U32.withName("res"), U32.withName("flags")).withName("io_uring_cqe");
    /** struct io_uring_cqe of a ring set up with IORING_SETUP_CQE32 (32 bytes, big_cqe[2]). */
    public static final StructLayout CQE32 = MemoryLayout.structLayout(
            U64.withName("user_data"), U32.withName("res"), U32.withName("flags"),
            MemoryLayout.sequenceLayout(2, U64).withName("big_cqe")).withName("io_uring_cqe32");

    /** struct iovec (16 bytes). */
    public static final StructLayout IOVEC = MemoryLayout.structLayout(
            ValueLayout.ADDRESS.withName("iov_base"), U64.withName("iov_len")).withName("iovec");

    /** struct io_uring_probe_op (8 bytes). */
    public static final StructLayout PROBE_OP = MemoryLayout.structLayout(
            U8.withName("op"), U8.withName("resv"), U16.withName("flags"), U32.withName("resv2")).withName("io_uring_probe_op");

    /** struct io_uring_probe with room for 256 operations (16 + 256 * 8 bytes). */
    public static final StructLayout PROBE = MemoryLayout.structLayout(
            U8.withName("last_op"), U8.withName("ops_len"), U16.withName("resv"),
            MemoryLayout.sequenceLayout(3, U32).withName("resv2"),
            MemoryLayout.sequenceLayout(256, PROBE_OP).withName("ops")).withName("io_uring_probe");

    static final VarHandle PROBE_OPS_LEN = PROBE.varHandle(groupElement("ops_len"));
    static final VarHandle PROBE_OP_FLAGS = PROBE.varHandle(groupElement("ops"),
            MemoryLayout.PathElement.sequenceElement(), groupElement("flags"));

    public static SequenceLayout iovecArray(long count) {
        return MemoryLayout.sequenceLayout(count, IOVEC);
    }

    // --- io_uring_params
    static final VarHandle P_SQ_ENTRIES = PARAMS.varHandle(groupElement("sq_entries"));
    static final VarHandle P_CQ_ENTRIES = PARAMS.varHandle(groupElement("cq_entries"));
    static final VarHandle P_FLAGS = PARAMS.varHandle(groupElement("flags"));
    static final VarHandle P_FEATURES = PARAMS.varHandle(groupElement("features"));
    static final VarHandle P_SQ_HEAD = PARAMS.varHandle(groupElement("sq_off"), groupElement("head"));
    static final VarHandle P_SQ_TAIL = PARAMS.varHandle(groupElement("sq_off"), groupElement("tail"));
    static final VarHandle P_SQ_RING_MASK = PARAMS.varHandle(groupElement("sq_off"), groupElement("ring_mask"));
    static final VarHandle P_SQ_RING_ENTRIES = PARAMS.varHandle(groupElement("sq_off"), groupElement("ring_entries"));
    static final VarHandle P_SQ_FLAGS = PARAMS.varHandle(groupElement("sq_off"), groupElement("flags"));
    static final VarHandle P_SQ_DROPPED = PARAMS.varHandle(groupElement("sq_off"), groupElement("dropped"));
    static final VarHandle P_SQ_ARRAY = PARAMS.varHandle(groupElement("sq_off"), groupElement("array"));
    static final VarHandle P_CQ_HEAD = PARAMS.varHandle(groupElement("cq_off"), groupElement("head"));
    static final VarHandle P_CQ_TAIL = PARAMS.varHandle(groupElement("cq_off"), groupElement("tail"));
    static final VarHandle P_CQ_RING_MASK = PARAMS.varHandle(groupElement("cq_off"), groupElement("ring_mask"));
    static final VarHandle P_CQ_RING_ENTRIES = PARAMS.varHandle(groupElement("cq_off"), groupElement("ring_entries"));
    static final VarHandle P_CQ_OVERFLOW = PARAMS.varHandle(groupElement("cq_off"), groupElement("overflow"));
    static final VarHandle P_CQ_CQES = PARAMS.varHandle(groupElement("cq_off"), groupElement("cqes"));

    // --- io_uring_sqe (offsets are identical in the 64- and 128-byte forms)
    static final VarHandle SQE_OPCODE = SQE.varHandle(groupElement("opcode"));
    static final VarHandle SQE_FLAGS = SQE.varHandle(groupElement("flags"));
    static final VarHandle SQE_IOPRIO = SQE.varHandle(groupElement("ioprio"));
    static final VarHandle SQE_FD = SQE.varHandle(groupElement("fd"));
    static final VarHandle SQE_OFF = SQE.varHandle(groupElement("off_or_cmd"), groupElement("off"));
    static final VarHandle SQE_CMD_OP = SQE.varHandle(groupElement("off_or_cmd"), groupElement("cmd"), groupElement("cmd_op"));
    static final VarHandle SQE_ADDR = SQE.varHandle(groupElement("addr"));
    static final VarHandle SQE_LEN = SQE.varHandle(groupElement("len"));
    static final VarHandle SQE_OP_FLAGS = SQE.varHandle(groupElement("op_flags"));
    static final VarHandle SQE_USER_DATA = SQE.varHandle(groupElement("user_data"));
    static final VarHandle SQE_BUF_INDEX = SQE.varHandle(groupElement("buf_index"));
    static final VarHandle SQE_PERSONALITY = SQE.varHandle(groupElement("personality"));
    static final VarHandle SQE_FILE_INDEX = SQE.varHandle(groupElement("file_index"));
    static final VarHandle SQE_ADDR3 = SQE.varHandle(groupElement("addr3_or_cmd"), groupElement("tail"), groupElement("addr3"));

    // --- io_uring_cqe
    static final VarHandle CQE_USER_DATA = CQE.varHandle(groupElement("user_data"));
    static final VarHandle CQE_RES = CQE.varHandle(groupElement("res"));
    static final VarHandle CQE_FLAGS = CQE.varHandle(groupElement("flags"));
    static final long CQE_BIG_OFFSET = CQE32.byteOffset(groupElement("big_cqe"));

    // --- iovec
    static final VarHandle IOV_BASE = IOVEC.varHandle(groupElement("iov_base"));
    static final VarHandle IOV_LEN = IOVEC.varHandle(groupElement("iov_len"));

    static {
        if (PARAMS.byteSize() != 120 || SQE.byteSize() != 64 || SQE128.byteSize() != 128
                || CQE.byteSize() != 16 || CQE32.byteSize() != 32 || SQE_CMD_OFFSET != 48) {
            throw new AssertionError("io_uring layout mismatch");
        }
    }
}
