"""A registry of described LoRAs and prompts labelled with the LoRA that fits them (paraphrases included).

Most prompts do not share a keyword with their LoRA's description ("aquarelle" for watercolor, "Dutch
masters" for oil portraits, "SNES" for pixel art): the recommender must match meaning, not words.
"""

from __future__ import annotations

LORAS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # name: (description, tags, trigger words)
    "film-grain": (
        "Analog 35mm film photography look with visible grain, soft halation and faded colours",
        ("film", "analog", "photography"),
        ("grainy 35mm",),
    ),
    "watercolor-wash": (
        "Loose watercolor painting with soft washes, bleeding pigments and paper texture",
        ("watercolor", "painting"),
        ("wcwash",),
    ),
    "anime-cel": ("Japanese anime cel shading, clean line art, vibrant flat colours", ("anime", "manga"), ()),
    "pixel-art": ("Retro 8-bit and 16-bit pixel art sprites and scenes", ("pixel art", "retro game"), ()),
    "neon-cyberpunk": (
        "Cyberpunk city nights with neon signs, rain-soaked streets and holograms",
        ("cyberpunk", "neon", "sci-fi"),
        (),
    ),
    "oil-portrait": (
        "Classical oil painting portraits with visible brush strokes and Rembrandt lighting",
        ("oil painting", "classical", "portrait"),
        (),
    ),
    "pencil-sketch": (
        "Graphite pencil sketch, hand-drawn hatching on white paper",
        ("sketch", "drawing"),
        (),
    ),
    "claymation": ("Stop-motion clay figures, plasticine textures, handmade miniature sets", ("clay",), ()),
    "lowpoly-3d": ("Low poly 3D render with flat shaded geometric facets", ("3d", "low poly"), ()),
    "ukiyo-e": (
        "Japanese woodblock print style, ukiyo-e waves, flat colours and bold outlines",
        ("woodblock", "japanese art"),
        (),
    ),
    "product-studio": (
        "Clean commercial product photography on a seamless white background with softbox lighting",
        ("product", "studio", "commercial"),
        (),
    ),
    "food-photo": (
        "Appetizing food photography, overhead shots of dishes, shallow depth of field",
        ("food", "photography"),
        (),
    ),
    "golden-hour": ("Warm golden hour sunlight, long shadows, sunset glow", ("lighting", "sunset"), ()),
    "fitness-action": (
        "Dynamic sports and fitness action shots, athletes mid-movement, sweat and motion",
        ("sports", "fitness"),
        (),
    ),
    "vaporwave": (
        "Vaporwave aesthetic, pink and teal gradients, 80s retro computer graphics, Greek statues",
        ("vaporwave", "retro"),
        (),
    ),
    "isometric-room": (
        "Isometric miniature room dioramas, cute cutaway interiors",
        ("isometric", "diorama"),
        (),
    ),
    "macro-nature": (
        "Macro photography of insects, flowers and dew drops with extreme close-up detail",
        ("macro", "nature"),
        (),
    ),
    "comic-book": (
        "American comic book style with halftone dots, bold ink outlines and speech bubbles",
        ("comic", "superhero"),
        (),
    ),
    "fantasy-landscape": (
        "Epic fantasy landscapes, floating islands, castles and dramatic skies",
        ("fantasy", "landscape"),
        (),
    ),
    "stained-glass": (
        "Stained glass window art, colourful glass segments with lead lines",
        ("glass", "art"),
        (),
    ),
    "noir": (
        "Black and white film noir, high contrast shadows, 1940s detective mood",
        ("noir", "black and white"),
        (),
    ),
    "children-book": (
        "Whimsical children's book illustration, gentle colours, storybook characters",
        ("illustration", "kids"),
        (),
    ),
    "astro-photo": (
        "Night sky astrophotography, milky way, stars and nebulae",
        ("astrophotography", "night"),
        (),
    ),
    "embroidery": ("Hand stitched embroidery and cross-stitch textile art", ("embroidery", "textile"), ()),
}

LABELLED_PROMPTS: list[tuple[str, str]] = [
    ("a cat on a windowsill, grainy 35mm", "film-grain"),
    ("street portrait shot on expired film with heavy grain", "film-grain"),
    ("old analog camera look, faded colours, a woman at a bus stop", "film-grain"),
    ("a lighthouse painted in watercolor", "watercolor-wash"),
    ("soft pastel aquarelle of a village by the sea", "watercolor-wash"),
    ("a girl with big eyes in the style of a Japanese cartoon", "anime-cel"),
    ("a samurai, anime screenshot", "anime-cel"),
    ("an 8-bit video game castle", "pixel-art"),
    ("a knight sprite from an old SNES game", "pixel-art"),
    ("rainy night in a futuristic megacity with glowing signs", "neon-cyberpunk"),
    ("a hacker in a dystopian sci-fi street with holographic ads", "neon-cyberpunk"),
    ("portrait of an old sailor in the manner of the Dutch masters", "oil-portrait"),
    ("a noblewoman painted on canvas with thick brushwork", "oil-portrait"),
    ("a quick graphite drawing of a horse", "pencil-sketch"),
    ("hand-drawn study of a hand with cross hatching", "pencil-sketch"),
    ("a plasticine dinosaur in a stop motion film", "claymation"),
    ("a fox made of modelling clay", "claymation"),
    ("a low-polygon mountain scene with faceted shapes", "lowpoly-3d"),
    ("the great wave in the style of Hokusai", "ukiyo-e"),
    ("an Edo period print of a geisha", "ukiyo-e"),
    ("a perfume bottle on a white backdrop, studio shot for an online shop", "product-studio"),
    ("e-commerce packshot of running shoes", "product-studio"),
    ("a bowl of ramen seen from above, restaurant menu photo", "food-photo"),
    ("delicious pancakes with berries, food blog picture", "food-photo"),
    ("a couple walking on the beach as the sun goes down, warm light", "golden-hour"),
    ("a wheat field bathed in late afternoon sun", "golden-hour"),
    ("a sprinter exploding out of the blocks", "fitness-action"),
    ("woman doing kettlebell swings in a gym, motion blur", "fitness-action"),
    ("a marble bust with pink and teal 80s computer graphics", "vaporwave"),
    ("a tiny cutaway bedroom diorama seen at 45 degrees", "isometric-room"),
    ("extreme close-up of a bee on a flower covered in dew", "macro-nature"),
    ("a superhero punching a robot, halftone dots and speech bubbles", "comic-book"),
    ("a castle on a floating island above the clouds", "fantasy-landscape"),
    ("a saint depicted in a cathedral window of coloured glass", "stained-glass"),
    ("a detective in a trench coat, black and white, hard shadows", "noir"),
    ("a friendly bear having tea, bedtime story illustration", "children-book"),
    ("the milky way over a desert at night", "astro-photo"),
    ("a flower pattern sewn with thread on linen", "embroidery"),
]
