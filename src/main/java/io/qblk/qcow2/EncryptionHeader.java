package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * How an encrypted image is encrypted, for info only (qblk never decrypts): header crypt_method 1
 * is the legacy AES-CBC scheme (nothing more to say), 2 is LUKS, whose LUKS1 header lies in the
 * clusters the full disk encryption header extension names. LUKS1 header fields (big endian):
 *
 * <pre>
 *   0 magic "LUKS\xba\xbe"  6 version (1)  8 cipher name[32]  40 cipher mode[32]  72 hash spec[32]
 * 104 payload offset (sectors)  108 key bytes  112 master key digest[20]  132 digest salt[32]
 * 164 digest iterations  168 uuid[40]  208 eight key slots of 48 bytes:
 *     { u32 active (0x00AC71F3) or disabled (0x0000DEAD), u32 iterations, salt[32], u32 key material offset (sectors), u32 stripes }
 * </pre>
 *
 * @param format "aes" or "luks"; the other fields are null/0 for "aes"
 */
public record EncryptionHeader(String format, String cipherAlg, String cipherMode, String ivgenAlg, String ivgenHashAlg,
        String hashAlg, String uuid, List<Slot> slots, long payloadOffset, long masterKeyIters) {

    /** One LUKS key slot; {@code iters} and {@code stripes} only mean something when active. */
    public record Slot(boolean active, long iters, long keyOffset, long stripes) {}

    static final int LUKS1_BYTES = 208 + 8 * 48;
    private static final int SLOT_ACTIVE = 0x00AC71F3, SLOT_DISABLED = 0x0000DEAD;

    /** The encryption of the image with header {@code h}, or null when it is not encrypted. */
    static EncryptionHeader read(IoBackend file, Qcow2Header h) throws IOException {
        return switch (h.cryptMethod) {
            case 0 -> null;
            case 1 -> new EncryptionHeader("aes", null, null, null, null, null, null, List.of(), 0, 0);
            default -> {
                if (h.cryptoHeaderLength < LUKS1_BYTES || h.cryptoHeaderOffset + LUKS1_BYTES > file.size())
                    throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "LUKS header at " + h.cryptoHeaderOffset + " (length " + h.cryptoHeaderLength
                            + ") is too short or past the end of the file");
                yield parseLuks(FileReads.bytes(file, h.cryptoHeaderOffset, LUKS1_BYTES));
            }
        };
    }

    static EncryptionHeader parseLuks(byte[] b) throws Qcow2Exception {
        ByteBuffer bb = ByteBuffer.wrap(b); // big endian
        if (!(b[0] == 'L' && b[1] == 'U' && b[2] == 'K' && b[3] == 'S' && (b[4] & 0xff) == 0xba && (b[5] & 0xff) == 0xbe))
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "encryption header has no LUKS magic");
        int version = bb.getShort(6) & 0xffff;
        if (version != 1) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported LUKS version " + version + " (qcow2 embeds LUKS1)");
        String cipher = text(b, 8, 32), mode = text(b, 40, 32), hash = text(b, 72, 32);
        long keyBytes = Integer.toUnsignedLong(bb.getInt(108));
        String[] modeParts = mode.split("-", 2);
        String cipherMode = modeParts[0];
        String ivgen = modeParts.length > 1 ? modeParts[1] : "plain";
        String ivgenHash = null;
        int colon = ivgen.indexOf(':');
        if (colon >= 0) {
            ivgenHash = ivgen.substring(colon + 1);
            ivgen = ivgen.substring(0, colon);
        }
        long keyBits = keyBytes * 8 / ("xts".equals(cipherMode) ? 2 : 1); // xts keys hold two cipher keys
        String alg = switch (cipher) {
            case "aes", "serpent", "twofish" -> cipher + "-" + keyBits;
            case "cast5" -> "cast5-128";
            default -> cipher;
        };
        List<Slot> slots = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            int at = 208 + i * 48;
            int state = bb.getInt(at);
            if (state != SLOT_ACTIVE && state != SLOT_DISABLED)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "LUKS key slot " + i + " has a bad state 0x" + Integer.toHexString(state));
            slots.add(new Slot(state == SLOT_ACTIVE, Integer.toUnsignedLong(bb.getInt(at + 4)),
                    Integer.toUnsignedLong(bb.getInt(at + 40)) * 512, Integer.toUnsignedLong(bb.getInt(at + 44))));
        }
        return new EncryptionHeader("luks", alg, cipherMode, ivgen, ivgenHash, hash, text(b, 168, 40), List.copyOf(slots),
                Integer.toUnsignedLong(bb.getInt(104)) * 512, Integer.toUnsignedLong(bb.getInt(164)));
    }

    private static String text(byte[] b, int from, int max) {
        int end = from;
        while (end < from + max && b[end] != 0) end++;
        return new String(b, from, end - from, StandardCharsets.US_ASCII);
    }
}
