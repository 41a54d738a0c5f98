package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.cli.ImagePatcher;
import io.qblk.cli.QblkRunner;
import io.qblk.cli.QemuTools;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every malformed-header case is refused with one clear message (engine: {@link Qcow2Exception};
 * CLI: one stderr line, exit 1, no stack trace) and the file's bytes stay exactly as they were.
 */
class MalformedHeaderTest {
    @TempDir
    static Path shared;
    static Path baseV3, baseV2;

    @TempDir
    Path dir;

    interface Patch { void apply(ImagePatcher p) throws Exception; }

    @BeforeAll
    static void makeBases() {
        baseV3 = shared.resolve("v3.qcow2");
        baseV2 = shared.resolve("v2.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", baseV3.toString(), "1M").expect(0);
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", baseV2.toString(), "1M").expect(0);
        QemuTools.qemuIo(baseV3, false, "write -P 0x42 0 64k").expect(0);
        QemuTools.qemuIo(baseV2, false, "write -P 0x42 0 64k").expect(0);
    }

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of("bad magic", 3, (Patch) p -> p.u32(0, 0x514649fa)),
                Arguments.of("version 1", 3, (Patch) p -> p.u32(4, 1)),
                Arguments.of("version 4", 3, (Patch) p -> p.u32(4, 4)),
                Arguments.of("cluster_bits 8", 3, (Patch) p -> p.u32(20, 8)),
                Arguments.of("cluster_bits 22", 3, (Patch) p -> p.u32(20, 22)),
                Arguments.of("cluster_bits 63", 2, (Patch) p -> p.u32(20, 63)),
                Arguments.of("L1 too small", 3, (Patch) p -> p.u32(36, 0)),
                Arguments.of("L1 too small v2", 2, (Patch) p -> p.u32(36, 0)),
                Arguments.of("L1 size huge", 3, (Patch) p -> p.u32(36, 0x7fffffff)),
                Arguments.of("L1 past EOF", 3, (Patch) p -> p.u64(40, 1L << 40)),
                Arguments.of("L1 misaligned", 3, (Patch) p -> p.u64(40, p.u64(40) + 8)),
                Arguments.of("L1 at offset 0", 2, (Patch) p -> p.u64(40, 0)),
                Arguments.of("refcount table misaligned", 3, (Patch) p -> p.u64(48, p.u64(48) + 512)),
                Arguments.of("refcount table past EOF", 3, (Patch) p -> p.u64(48, 1L << 44)),
                Arguments.of("refcount table zero clusters", 3, (Patch) p -> p.u32(56, 0)),
                Arguments.of("refcount table huge", 2, (Patch) p -> p.u32(56, 0x7fffffff)),
                Arguments.of("refcount_order 7", 3, (Patch) p -> p.u32(96, 7)),
                Arguments.of("refcount_order huge", 3, (Patch) p -> p.u32(96, 0xffffff00)),
                Arguments.of("header_length 100", 3, (Patch) p -> p.u32(100, 100)),
                Arguments.of("header_length 96", 3, (Patch) p -> p.u32(100, 96)),
                Arguments.of("header_length past cluster", 3, (Patch) p -> p.u32(100, 1 << 20)),
                Arguments.of("unknown incompatible bit", 3, (Patch) p -> p.u64(72, p.u64(72) | (1L << 20))),
                Arguments.of("unknown incompatible bit 63", 3, (Patch) p -> p.u64(72, p.u64(72) | (1L << 63))),
                Arguments.of("LUKS encryption", 3, (Patch) p -> p.u32(32, 2)),
                Arguments.of("external data file", 3, (Patch) p -> p.u64(72, p.u64(72) | (1L << 2))),
                Arguments.of("truncated file", 3, (Patch) p -> p.setLength(50)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void refusedWithOneClearErrorAndBytesUnchanged(String name, int version, Patch patch) throws Exception {
        Path img = dir.resolve("bad.qcow2");
        Files.copy(version == 3 ? baseV3 : baseV2, img);
        try (ImagePatcher p = new ImagePatcher(img)) {
            patch.apply(p);
        }
        String before = QemuTools.sha256(img);

        for (boolean ro : new boolean[] {false, true}) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class,
                    () -> Qcow2Image.open(img, OpenOptions.defaults().withReadOnly(ro)).close(), name);
            assertTrue(e.getMessage() != null && !e.getMessage().isBlank() && !e.getMessage().contains("\n"),
                    "one-line message: " + e.getMessage());
        }
        assertEquals(before, QemuTools.sha256(img), "engine open changed the file");

        for (String[] args : new String[][] {{"check", img.toString()}, {"map", "-f", "qcow2", img.toString()},
                {"io", "-f", "qcow2", "-c", "write -P 1 0 4k", img.toString()}, {"info", "-f", "qcow2", img.toString()}}) {
            QblkRunner.Result r = QblkRunner.run(args);
            assertEquals(1, r.exitCode(), name + " " + args[0] + ": " + r.out() + r.err());
            String err = r.err().strip();
            assertFalse(err.isEmpty() || err.contains("\n") || err.contains("Exception"), name + ": " + r.err());
            assertTrue(err.startsWith("qblk: "), err);
        }
        assertEquals(before, QemuTools.sha256(img), "CLI changed the file");
    }

    @Test
    void corruptBitRefusesWritesAndKeepsBytes() throws Exception {
        Path img = dir.resolve("corrupt.qcow2");
        Files.copy(baseV3, img);
        try (ImagePatcher p = new ImagePatcher(img)) {
            p.u64(72, p.u64(72) | 2L);
        }
        String before = QemuTools.sha256(img);
        // The engine opens a corrupt-marked image (so check -r can repair it) but refuses every write.
        try (Qcow2Image image = Qcow2Image.open(img, OpenOptions.defaults());
             java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            assertTrue(image.readOnly());
            java.io.IOException e = assertThrows(java.io.IOException.class,
                    () -> image.write(0, a.allocate(4096).fill((byte) 1)));
            assertTrue(e.getMessage().toLowerCase().contains("corrupt"), e.getMessage());
        }
        QblkRunner.Result r = QblkRunner.run("io", "-c", "write -P 1 0 4k", img.toString());
        assertEquals(1, r.exitCode(), r.out() + r.err());
        assertTrue(r.err().strip().startsWith("qblk: ") && !r.err().strip().contains("\n"), r.err());
        assertEquals(before, QemuTools.sha256(img));
    }
}
