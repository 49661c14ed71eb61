"""Audio to Waveform / Audio to Spectrogram: AUDIO in, IMAGE out (one picture per clip)."""

from . import widgets as w

AUDIO = w.audio("The audio to draw. A batch of clips gives a batch of images, one per clip.")
WIDTH = w.integer("Image width in pixels.", 1024, 16, 8192)
BACKGROUND = w.text("Background colour, as hex (#RRGGBB or #RGB).", default="#16181d")


class _AudioPicture:
    CATEGORY = "audio/fal"
    FUNCTION = "draw"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)


class AudioToWaveform(_AudioPicture):
    DISPLAY_NAME = "Audio to Waveform (fal Audio)"
    DESCRIPTION = ("Draw the waveform of audio as an image: each pixel column spans the lowest to highest sample "
                   "of its stretch of time, all channels together.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": AUDIO,
            "width": WIDTH,
            "height": w.integer("Image height in pixels.", 256, 16, 4096),
            "background": BACKGROUND,
            "foreground": w.text("Waveform colour, as hex (#RRGGBB or #RGB).", default="#4fc3f7"),
        }}

    def draw(self, audio, width, height, background, foreground):
        from ..media import images

        name = self.DISPLAY_NAME
        return (images.waveform_images(audio, int(width), int(height), images.parse_colour(background, name,
                "background"), images.parse_colour(foreground, name, "foreground"), name),)


class AudioToSpectrogram(_AudioPicture):
    DISPLAY_NAME = "Audio to Spectrogram (fal Audio)"
    DESCRIPTION = ("Draw a spectrogram of audio as an image: time left to right, frequency bottom to top on a log "
                   "scale (octaves equally tall), loudness as colour.")

    @classmethod
    def INPUT_TYPES(cls):
        from ..media import images

        return {"required": {
            "audio": AUDIO,
            "width": WIDTH,
            "height": w.integer("Image height in pixels (frequency rows).", 512, 16, 4096),
            "colour_map": w.choice([*images.COLOUR_MAPS, images.TWO_COLOURS], "magma",
                                   "How loudness becomes colour: quiet at the map's start, loud at its end. "
                                   f"'{images.TWO_COLOURS}' blends the two colours below."),
            "db_range": w.number("Loudness range shown, in dB below full scale: quieter parts get the quietest "
                                 "colour.", 80.0, 20.0, 160.0, 1.0),
            "min_frequency": w.number("Lowest frequency shown (bottom row), in Hz. The top row is half the sample "
                                      "rate.", 20.0, 1.0, 2000.0, 1.0),
            "background": w.text("Colour of silence when colour_map is "
                                 f"'{images.TWO_COLOURS}', as hex (#RRGGBB or #RGB).", default="#16181d"),
            "foreground": w.text("Colour of full-scale loudness when colour_map is "
                                 f"'{images.TWO_COLOURS}', as hex (#RRGGBB or #RGB).", default="#4fc3f7"),
        }}

    def draw(self, audio, width, height, colour_map, db_range, min_frequency, background, foreground):
        from ..core import validate
        from ..core.errors import invalid
        from ..media import images

        name = self.DISPLAY_NAME
        validate.widgets(name, self.INPUT_TYPES(), {"db_range": db_range, "min_frequency": min_frequency})
        if colour_map not in images.COLOUR_MAPS and colour_map != images.TWO_COLOURS:
            raise invalid(name, "colour_map", f"must be one of {', '.join(images.COLOUR_MAPS)} or "
                                              f"'{images.TWO_COLOURS}'")
        return (images.spectrogram_images(audio, int(width), int(height), colour_map, float(db_range),
                                          float(min_frequency), images.parse_colour(background, name, "background"),
                                          images.parse_colour(foreground, name, "foreground"), name),)
