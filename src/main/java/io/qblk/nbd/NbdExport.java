package io.qblk.nbd;

import io.qblk.target.BlockTarget;

/**
 * One named export of an {@link NbdServer}: a {@link BlockTarget} and whether clients may write it.
 * The server never closes the target; whoever added the export owns it.
 */
public record NbdExport(String name, BlockTarget target, boolean readOnly, String description) {
    public NbdExport {
        if (name == null) throw new IllegalArgumentException("export name must not be null");
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > 4096 || name.indexOf('\0') >= 0)
            throw new IllegalArgumentException("export name must be at most 4096 bytes without NUL");
        if (target == null) throw new IllegalArgumentException("export target must not be null");
        readOnly = readOnly || target.readOnly();
        if (description == null) description = "";
    }

    public long size() {
        return target.size();
    }

    /** Transmission flags advertised for this export (structured replies decide NBD_FLAG_SEND_DF). */
    int transmissionFlags(boolean structured) {
        int f = NbdProtocol.FLAG_HAS_FLAGS | NbdProtocol.FLAG_SEND_FLUSH | NbdProtocol.FLAG_SEND_FUA
                | NbdProtocol.FLAG_CAN_MULTI_CONN;
        if (readOnly) f |= NbdProtocol.FLAG_READ_ONLY;
        else f |= NbdProtocol.FLAG_SEND_TRIM | NbdProtocol.FLAG_SEND_WRITE_ZEROES;
        if (structured) f |= NbdProtocol.FLAG_SEND_DF;
        return f;
    }
}
