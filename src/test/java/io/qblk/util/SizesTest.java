package io.qblk.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class SizesTest {
    @Test
    void parsesSuffixesAndHex() {
        assertEquals(512, Sizes.parse("512"));
        assertEquals(65536, Sizes.parse("64k"));
        assertEquals(65536, Sizes.parse("64K"));
        assertEquals(64L << 20, Sizes.parse("64M"));
        assertEquals(2L << 30, Sizes.parse("2G"));
        assertEquals(1L << 40, Sizes.parse("1T"));
        assertEquals(0x1000, Sizes.parse("0x1000"));
        assertEquals(1536, Sizes.parse("1.5k"));
        assertEquals(100, Sizes.parse("100b"));
        assertEquals(8L << 30, Sizes.parse("8GiB"));
        assertEquals(3L << 29, Sizes.parse("1.5g"));
        assertEquals(1L << 60, Sizes.parse("1E"));
        assertEquals(Long.MAX_VALUE, Sizes.parse("0x7fffffffffffffff"));
        for (String bad : new String[] {"", " ", "x", "-1", "12Q", "1.5.5k", "99999999999999999999", "16E", "8E",
                "8GB", "8KB", "8 G", " 8G", "8G ", "0.1k", "0x", "0x10k", "0x8000000000000000", "1e3", "GiB", "8iB", ".5k"})
            assertThrows(IllegalArgumentException.class, () -> Sizes.parse(bad), "'" + bad + "'");
        assertEquals("'12Q' is not a size (e.g. 4096, 512M, 8G, 8GiB, 1.5G, 0x1000)",
                assertThrows(IllegalArgumentException.class, () -> Sizes.parse("12Q")).getMessage());
        assertEquals("'16E' is too large", assertThrows(IllegalArgumentException.class, () -> Sizes.parse("16E")).getMessage());
        assertEquals("'0.1k' is not a whole number of bytes",
                assertThrows(IllegalArgumentException.class, () -> Sizes.parse("0.1k")).getMessage());
    }

    @Test
    void exactSizesForTables() {
        assertEquals("8 GiB", Sizes.exact(8L << 30));
        assertEquals("1536 KiB", Sizes.exact(1536L << 10));
        assertEquals("1000 B", Sizes.exact(1000));
        assertEquals("0 B", Sizes.exact(0));
    }

    @Test
    void humanSizesLikeQemu() {
        assertEquals("64 MiB", Sizes.human(64L << 20));
        assertEquals("1 GiB", Sizes.human(1L << 30));
        assertEquals("324 KiB", Sizes.human(331776));
        assertEquals("196 KiB", Sizes.human(200704));
        assertEquals("512 B", Sizes.human(512));
        assertEquals("0 B", Sizes.human(0));
        assertEquals("1.5 GiB", Sizes.human(3L << 29));
        assertEquals("0.977 KiB", Sizes.human(1000));
        assertEquals("64 KiB", Sizes.ioHuman(65536));
        assertEquals("1.500 MiB", Sizes.ioHuman(1.5 * (1 << 20)));
        assertEquals("512 bytes", Sizes.ioHuman(512));
    }
}
