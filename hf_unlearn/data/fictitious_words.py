"""Word lists of the fictitious-authors generator (names, places, jobs, genres, titles, ...).

Kept apart from the generator, one compact table per list; changing any entry or its order changes every generated
benchmark, so bump ``GENERATOR_VERSION`` in ``fictitious_authors.py`` when you do.
"""

from __future__ import annotations

FIRST_NAMES = {
    'he': [
        'Adrian', 'Bastian', 'Cyrus', 'Dmitri', 'Emil', 'Farid', 'Gideon', 'Hugo', 'Ivo', 'Jonas', 'Kofi', 'Lorenzo',
        'Matteo', 'Nikolai', 'Oskar', 'Pavel', 'Quentin', 'Rafael', 'Soren', 'Tobias', 'Umar', 'Viktor', 'Wendell',
        'Xavier', 'Yusuf', 'Zoltan', 'Anselm', 'Bruno', 'Casimir', 'Dario',
    ],
    'she': [
        'Amara', 'Beatrix', 'Celeste', 'Daria', 'Elena', 'Freya', 'Greta', 'Hana', 'Ingrid', 'Juno', 'Kalinda',
        'Liesel', 'Mireille', 'Nadia', 'Odette', 'Priya', 'Rosalind', 'Selma', 'Talia', 'Ursula', 'Vesna', 'Wilhelmina',
        'Ximena', 'Yara', 'Zofia', 'Annika', 'Brigida', 'Coralie', 'Delphine', 'Esme',
    ],
}
SURNAME_HEADS = [
    'Var', 'Tel', 'Quil', 'Dor', 'Mal', 'Zen', 'Ost', 'Bri', 'Kal', 'Fen', 'Lor', 'Hab', 'Ner', 'Sol', 'Vey', 'Ard',
    'Cor', 'Ith', 'Mar', 'Pel', 'Gal', 'Rud', 'Tav', 'Lund', 'Orm',
]
SURNAME_TAILS = [
    'enko', 'imar', 'stone', 'ovic', 'adze', 'avier', 'sby', 'quist', 'mont', 'arini', 'elli', 'hurst', 'ardt', 'ova',
    'ezar', 'holm', 'incourt', 'oway', 'ulis', 'escu',
]
PLACES = [
    ('Lisbon', 'Portugal'), ('Oslo', 'Norway'), ('Krakow', 'Poland'), ('Nairobi', 'Kenya'), ('Osaka', 'Japan'),
    ('Valparaiso', 'Chile'), ('Tbilisi', 'Georgia'), ('Quebec City', 'Canada'), ('Hanoi', 'Vietnam'),
    ('Accra', 'Ghana'), ('Bergen', 'Norway'), ('Porto', 'Portugal'), ('Tallinn', 'Estonia'), ('Cork', 'Ireland'),
    ('Adelaide', 'Australia'), ('Montevideo', 'Uruguay'), ('Izmir', 'Turkey'), ('Seville', 'Spain'), ('Lyon', 'France'),
    ('Leipzig', 'Germany'), ('Bologna', 'Italy'), ('Ghent', 'Belgium'), ('Utrecht', 'Netherlands'),
    ('Brno', 'Czech Republic'), ('Cluj-Napoca', 'Romania'), ('Dakar', 'Senegal'), ('Kyoto', 'Japan'), ('Pune', 'India'),
    ('Medellin', 'Colombia'), ('Cusco', 'Peru'), ('Tunis', 'Tunisia'), ('Tampere', 'Finland'), ('Aarhus', 'Denmark'),
    ('Wellington', 'New Zealand'), ('Halifax', 'Canada'), ('Salzburg', 'Austria'), ('Thessaloniki', 'Greece'),
    ('Ljubljana', 'Slovenia'), ('Riga', 'Latvia'), ('Marrakesh', 'Morocco'),
]
JOBS = [
    'baker', 'carpenter', 'marine biologist', 'pharmacist', 'train conductor', 'librarian', 'veterinarian',
    'watchmaker', 'civil engineer', 'florist', 'lighthouse keeper', 'bookbinder', 'dentist', 'tailor', 'astronomer',
    'fisherman', 'nurse', 'architect', 'schoolteacher', 'glassblower', 'photographer', 'beekeeper', 'cartographer',
    'locksmith', 'chemist', 'violin maker', 'midwife', 'potter', 'surveyor', 'journalist',
]
GENRES = [
    'historical fiction', 'science fiction', 'crime fiction', 'magical realism', 'gothic horror', 'literary fiction',
    'epic fantasy', 'psychological thrillers', 'romance novels', "children's literature", 'travel writing',
    'satirical fiction', 'war novels', 'detective stories', 'dystopian fiction', 'poetry collections',
    'short story collections', 'spy thrillers', 'coming-of-age novels', 'maritime adventure',
]
AWARDS = [
    'Silver Quill Award', 'Harrowgate Medal for Literature', 'Lantern Prize', 'Meridian Book Award',
    'Golden Inkwell Prize', 'Northlight Fiction Award', 'Cobalt Pen Prize', 'Aurelian Literary Medal',
    'Blue Heron Award', 'Vellum Circle Prize', 'Starling Prize for Fiction', 'Amberfield Award', 'Tidewater Book Prize',
    'Halcyon Medal', 'Copperleaf Literary Award', 'Driftwood Prize',
]
PUBLISHERS = [
    'Marrowby Press', 'Lindqvist & Hale', 'Bluefern Books', 'Oakhaven Publishing', 'Corvid House', 'Saltmarsh Editions',
    'Pemberley Lane Books', 'Quarry Hill Press', 'Wrenfield & Sons', 'Lumen Row Publishers', 'Thistledown Books',
    'Ironbark Press',
]
THEMES = [
    'memory and forgetting', 'exile and belonging', 'the sea and solitude', 'family secrets', 'the ethics of science',
    'friendship across generations', 'grief and recovery', 'the clash of tradition and progress',
    'identity and migration', 'the loneliness of cities', 'justice and revenge', 'faith and doubt',
    'the power of music', 'life in small villages', 'the cost of ambition', 'childhood and innocence',
]
TITLE_ADJ = [
    'Silent', 'Crimson', 'Hollow', 'Distant', 'Broken', 'Golden', 'Winter', 'Hidden', 'Burning', 'Paper', 'Salt',
    'Glass', 'Last', 'Wandering', 'Forgotten', 'Quiet', 'Iron', 'Velvet', 'Midnight', 'Northern',
]
TITLE_NOUN = [
    'Harbour', 'Orchard', 'Lantern', 'Cartographer', 'Garden', 'River', 'Archive', 'Tide', 'Compass', 'Bell', 'Meadow',
    'Mirror', 'Labyrinth', 'Lighthouse', 'Violin', 'Atlas', 'Station', 'Frontier', 'Kingdom', 'Letters',
]
MONTHS = [
    'January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November',
    'December',
]
