package io.qblk.cli;

import java.util.Locale;

/** {@code --output=human|json} of info, check and map. */
public enum OutputFormat {
    HUMAN, JSON;

    /** picocli converter accepting lower case. */
    public static final class Converter implements picocli.CommandLine.ITypeConverter<OutputFormat> {
        @Override
        public OutputFormat convert(String value) {
            return switch (value.toLowerCase(Locale.ROOT)) {
                case "human" -> HUMAN;
                case "json" -> JSON;
                default -> throw new picocli.CommandLine.TypeConversionException(
                        "--output must be 'human' or 'json', not '" + value + "'");
            };
        }
    }
}
